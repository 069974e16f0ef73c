"""Model-based test of the lease admitter: random claims, admissions, releases, heartbeats,
expiries, holder crashes, force-releases and controller restarts, checked after every step
against a model of what must be held."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select

from controller.scheduling.claims import Claims
from controller.scheduling.leases import LeaseAdmitter, force_release
from controller.store.database import Database
from controller.store.lease_schema import LeaseRow
from controller.store.schema import TaskRow
from tests.leases.helpers import (
    FakeClock,
    active_leases,
    add_task,
    inventory,
    migrated,
    resource_rows,
)

TTL = 30.0
INVENTORY = inventory(gpus=3, rwo=("scratch",), rwx=("datasets",))
_TEMPLATE_DIR = Path(tempfile.mkdtemp(prefix="leases-template-"))
_TEMPLATE = _TEMPLATE_DIR / "template.db"
migrated(f"sqlite:///{_TEMPLATE}").dispose()

# sampled_from, not integers/lists: Hypothesis favours small values, and a queue of
# claimless tasks (admitted at once) would leave the interesting states unvisited
volume_claims = st.sampled_from(
    [
        [],
        [("scratch", "rw")],
        [("datasets", "ro")],
        [("datasets", "rw")],
        [("scratch", "ro")],
        [("scratch", "rw"), ("datasets", "ro")],
        [("datasets", "ro"), ("datasets", "rw")],
        [("missing", "ro")],
    ]
)
task_claims = st.tuples(
    st.sampled_from([1, 2, 0, 1, 3, 4]),
    volume_claims,
    st.sampled_from(["a", "b"]),
    st.sampled_from([0, 1]),
)


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="leases-"))
        shutil.copy(_TEMPLATE, self.dir / "t.db")
        self.url = f"sqlite:///{self.dir / 't.db'}"
        self.clock = FakeClock()
        self._start()
        self.ids = itertools.count()
        self.status: dict[str, str] = {}  # task -> queued | running | done | crashed
        self.claims: dict[str, Claims] = {}
        self.held: dict[str, set[str]] = {}  # task -> resources the model says it holds
        self.expiry: dict[str, float] = {}  # task -> when its leases expire (model clock, s)
        self.max_token = 0

    def _start(self) -> None:
        self.db = Database(self.url)
        self.admitter = LeaseAdmitter(INVENTORY, TTL, self.clock)

    def _t(self) -> float:
        return self.clock.now.timestamp()

    def teardown(self) -> None:
        self.db.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules ------------------------------------------------------------------------------
    @initialize(tasks=st.lists(task_claims, min_size=3, max_size=6))
    def first_tasks(self, tasks: list[tuple[int, list[tuple[str, str]], str, int]]) -> None:
        for claim in tasks:
            self._submit(*claim)

    @rule(tasks=st.lists(task_claims, min_size=1, max_size=3))
    def submit(self, tasks: list[tuple[int, list[tuple[str, str]], str, int]]) -> None:
        for claim in tasks:
            self._submit(*claim)

    def _submit(self, gpu: int, volumes: list[tuple[str, str]], team: str, priority: int) -> None:
        task_id = f"t{next(self.ids)}"
        with self.db.write() as session:
            row = add_task(
                session,
                task_id,
                team=team,
                priority=priority,
                queued_at=self.clock.now,
                gpu=gpu,
                volumes=volumes,
            )
            self.claims[task_id] = Claims.of_spec(row.spec)
        self.status[task_id] = "queued"

    @rule()
    def admit(self) -> None:
        queued_ids = [t for t, s in self.status.items() if s == "queued"]
        nothing_held = not any(self.held.values())
        # leases of crashed holders are reclaimed once expired, in a round that leases anything
        if any(self.claims[t].leases_anything for t in queued_ids):
            for task_id, status in self.status.items():
                if (
                    status == "crashed"
                    and self.held.get(task_id)
                    and self.expiry[task_id] < self._t()
                ):
                    self.held[task_id] = set()
        with self.db.write() as session:
            rows = list(
                session.scalars(
                    select(TaskRow)
                    .where(TaskRow.id.in_(queued_ids))
                    .order_by(TaskRow.priority.desc(), TaskRow.queued_at)
                )
            )
            decisions = self.admitter.admit(session, rows)
            for row in rows:
                if decisions[row.id].admitted:
                    row.status = "running"
        admitted = [t for t in queued_ids if decisions[t].admitted]
        tokens = []
        for task_id in admitted:
            decision = decisions[task_id]
            self.status[task_id] = "running"
            want = self.claims[task_id]
            leases = decision.leases
            self.held[task_id] = {x["resource"] for x in leases}
            self.expiry[task_id] = self._t() + TTL
            assert sum(1 for x in leases if x["kind"] == "gpu") == want.gpu
            assert {x["resource"] for x in leases if x["kind"] == "volume"} == {
                f"volume:{v.claim}" for v in want.volumes
            }
            if leases:
                assert len({x["fencing_token"] for x in leases}) == 1
                token = leases[0]["fencing_token"]
                assert decision.env["TRACECTL_FENCING_TOKEN"] == str(token)
                tokens.append(token)
                devices = decision.env["CUDA_VISIBLE_DEVICES"]
                assert len([d for d in devices.split(",") if d]) == want.gpu
        assert len(set(tokens)) == len(tokens), "one token per admission"
        if tokens:
            assert min(tokens) > self.max_token, "fencing tokens must strictly increase"
            self.max_token = max(tokens)
        feasible = [t for t in queued_ids if self._feasible(self.claims[t])]
        if nothing_held and feasible and not admitted:
            raise AssertionError(f"idle inventory, feasible tasks {feasible}, none admitted")

    def _feasible(self, want: Claims) -> bool:
        return want.gpu <= 3 and all(v.claim != "missing" for v in want.volumes)

    def _pick(self, data: st.DataObject, status: str) -> str | None:
        tasks = sorted(t for t, s in self.status.items() if s == status)
        return data.draw(st.sampled_from(tasks)) if tasks else None

    @rule(data=st.data(), retry=st.booleans())
    def finish(self, data: st.DataObject, retry: bool) -> None:
        task_id = self._pick(data, "running")
        if task_id is None:
            return
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None
            row.status = "queued" if retry else "succeeded"
            row.queued_at = self.clock.now
            self.admitter.release(session, task_id, "retry" if retry else "succeeded")
        self.status[task_id] = "queued" if retry else "done"
        self.held[task_id] = set()

    @rule(data=st.data())
    def crash_without_release(self, data: st.DataObject) -> None:
        """The holder is gone but nobody called release(): only expiry can free its units."""
        task_id = self._pick(data, "running")
        if task_id is None:
            return
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None
            row.status = "failed"
        self.status[task_id] = "crashed"

    @rule()
    def heartbeat(self) -> None:
        running = [t for t, s in self.status.items() if s == "running"]
        with self.db.write() as session:
            self.admitter.heartbeat(session, running)
        for task_id in running:
            self.expiry[task_id] = self._t() + TTL

    @rule(seconds=st.sampled_from([1.0, 10.0, 31.0, 100.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(data=st.data())
    def force_release_one(self, data: st.DataObject) -> None:
        with self.db.read() as session:
            ids = sorted(x.id for x in active_leases(session))
        if not ids:
            return
        lease_id = data.draw(st.sampled_from(ids))
        with self.db.write() as session:
            lease = force_release(session, lease_id, "test", "tester", self.clock)
            assert lease is not None
            self.held[lease.task_id].discard(lease.resource)

    @rule()
    def restart_controller(self) -> None:
        self.db.dispose()
        self._start()

    @rule()
    def reclaim_with_executor_check(self) -> None:
        """The supervisor hook: an executor that says only 'running' tasks are alive."""
        with self.db.write() as session:
            self.admitter.reclaim_expired(session, lambda t: self.status.get(t) == "running")
        for task_id, status in self.status.items():
            if status != "running" and self.held.get(task_id) and self.expiry[task_id] < self._t():
                self.held[task_id] = set()

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def store_matches_model(self) -> None:
        with self.db.read() as session:
            active = active_leases(session)
            units = resource_rows(session)
            all_tokens = [
                t for (t,) in session.execute(select(LeaseRow.fencing_token).order_by(LeaseRow.id))
            ]
        exclusive: dict[str, list[str]] = {}
        shared: dict[str, int] = {}
        store_held: dict[str, set[str]] = {}
        for lease in active:
            store_held.setdefault(lease.task_id, set()).add(lease.resource)
            if lease.is_exclusive:
                exclusive.setdefault(lease.resource, []).append(lease.task_id)
            else:
                shared[lease.resource] = shared.get(lease.resource, 0) + 1
        for resource, holders in exclusive.items():
            assert len(holders) == 1, f"{resource} has two exclusive leases: {holders}"
            if units[resource].kind != "quota":
                assert shared.get(resource, 0) == 0, f"{resource}: writer beside readers"
        for name, unit in units.items():
            assert unit.exclusive_holder == (exclusive.get(name) or [None])[0], name
            assert unit.shared_holders == shared.get(name, 0), name
        model_held = {t: r for t, r in self.held.items() if r}
        assert store_held == model_held, "a lease was lost or leaked"
        for task_id, status in self.status.items():
            if status in ("done", "queued"):
                assert task_id not in store_held, f"released task {task_id} still holds"
        assert all_tokens == sorted(all_tokens), "tokens must grow with lease ids"


LeaseMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLeaseMachine = LeaseMachine.TestCase


def test_template_exists() -> None:
    assert _TEMPLATE.exists()
