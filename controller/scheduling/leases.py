"""LeaseAdmitter: GPUs, volumes and team quotas granted as leases, never twice.

Isolation argument (the same text is in docs/leases.md):

1. Every decision round runs inside the caller's write transaction. On SQLite that is
   BEGIN IMMEDIATE: one writer at a time for the whole file, so a round sees every earlier
   round's grants and nobody else's half-done work.
2. On PostgreSQL (READ COMMITTED) every writer of leases (a round, a release, a heartbeat,
   a reclaim, a force-release) first locks the fencing counter row (SELECT ... FOR UPDATE)
   and holds it to commit: lease writers are serialised, each statement after the lock
   sees everything committed before it, the token order is the commit order, and with one
   lock order (counter, then unit rows) there is no deadlock.
3. Each grant is a compare-and-set on the units' rows (`UPDATE resources ... WHERE
   exclusive_holder IS NULL AND shared_holders = 0`) that must hit every row it names;
   release does the reverse with relative updates, guarded by UPDATE ... RETURNING so a
   lease is given back once. A stale view can cost a grant, never double it.
4. The database is the backstop: a partial unique index allows one active exclusive lease
   per unit, and a CHECK forbids an exclusive holder beside shared ones. A bug that tried a
   double grant would abort its transaction, not commit it.
5. A task's claims are granted all together or not at all: a plan is made for every claim
   first, and a CAS that misses raises and aborts the whole round's transaction.

An expired lease is not taken back on its own: its holder may still run (a controller that
was down could not renew it). It is reclaimed only when `is_holder_alive(task_id)` says the
holder is gone; by default that is the store's view (the task is no longer STARTING or
RUNNING, which the supervisor only records after the executor reported the process gone).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from controller.domain.spec import Resources
from controller.scheduling.active_leases import read_active_leases
from controller.scheduling.admission import Admission
from controller.scheduling.claims import Claims, VolumeWant
from controller.scheduling.fair_share import admission_order
from controller.scheduling.grant_batch import GrantBatch, LeaseRace, give_back
from controller.scheduling.inventory import Inventory, mirror, quota_unit, volume_unit
from controller.store.lease_schema import FENCING_COUNTER, LeaseCounterRow, LeaseRow
from controller.store.schema import AuditRow, TaskRow, utcnow

Clock = Callable[[], datetime]
HolderCheck = Callable[[str], bool]
HOLDING_STATUSES = ("starting", "running")
_CHUNK = 500
_CLAIMS_CACHED = 10_000
__all__ = ["LeaseAdmitter", "LeaseRace", "end_leases", "force_release", "lock_round"]

# Built once: a round runs these every time, and a statement object that is reused keeps
# its cache key, so SQLAlchemy neither rebuilds nor re-keys it per round.
_counter = cast(Table, LeaseCounterRow.__table__)
_LOCK_ROUND = select(_counter.c.value).where(_counter.c.name == FENCING_COUNTER).with_for_update()
_SET_COUNTER = (
    update(_counter).where(_counter.c.name == FENCING_COUNTER).values(value=bindparam("token"))
)
_leases = cast(Table, LeaseRow.__table__)
_EXPIRED = select(_leases.c.id, _leases.c.task_id).where(
    _leases.c.released_at.is_(None), _leases.c.expires_at < bindparam("now")
)


@dataclass
class _Unit:
    """A unit's state as this round sees it (plain values: the ORM rows go stale after CAS)."""

    name: str
    kind: str
    pool: str
    flavor: str | None
    gpu_index: int | None
    access: str
    usable: bool
    exclusive_holder: str | None
    shared_holders: int
    reserved: str | None = None  # "rw": nobody else; "ro": readers only

    @classmethod
    def of(cls, row: Row[Any]) -> _Unit:
        return cls(
            row.name,
            row.kind,
            row.pool,
            row.flavor,
            row.gpu_index,
            row.access,
            bool(row.in_inventory),
            row.exclusive_holder,
            int(row.shared_holders),
        )

    def free_for(self, exclusive: bool) -> bool:
        if not self.usable or self.exclusive_holder is not None:
            return False
        if exclusive:
            return self.shared_holders == 0 and self.reserved is None
        return self.reserved in (None, "ro")


@dataclass
class _Plan:
    gpus: list[_Unit] = field(default_factory=list)
    volumes: list[tuple[_Unit, VolumeWant, bool]] = field(default_factory=list)
    quota: str | None = None


@dataclass
class _Blocked:
    reason: str
    reserve: list[tuple[_Unit, str]] = field(default_factory=list)


class LeaseAdmitter:
    def __init__(
        self,
        inventory: Inventory,
        lease_ttl_s: float = 30.0,
        clock: Clock = utcnow,
        is_holder_alive: Callable[[Session], HolderCheck] | None = None,
    ) -> None:
        self.inventory = inventory
        self.ttl = timedelta(seconds=lease_ttl_s)
        self.clock = clock
        self._holder_check = is_holder_alive or holder_alive_in_store
        self._quotas = {t: (q.cpu_milli, q.memory_bytes) for t, q in inventory.quotas.items()}
        self._has_gpus = any(p.count for p in inventory.gpu_pools)
        # task id -> (its spec's resources, Claims): a queued task is decided again every
        # round until it starts; validating its claims once is enough while they are equal
        self._claims: dict[str, tuple[Any, Claims]] = {}

    # -- the Admitter port ----------------------------------------------------------------
    def never_fits(self, resources: Resources) -> list[tuple[list[str | int], str]]:
        return self.inventory.never_fits(resources)

    def admit(self, session: Session, queued: list[TaskRow]) -> dict[str, Admission]:
        claims = {row.id: self._claims_of(row) for row in queued}
        needs = {row.id for row in queued if self._needs_lease(row, claims[row.id])}
        idle_env = (
            {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"} if self._has_gpus else {}
        )
        decisions = {
            row.id: Admission(True, env=dict(idle_env)) for row in queued if row.id not in needs
        }
        if not needs:
            return decisions
        token = issued = lock_round(session)
        now = self.clock()  # read under the lock: stamps follow the commit order
        active = read_active_leases(session, now)
        if active.expired and self._reclaim(
            session, active.expired, self._holders_alive(session, active.expired)
        ):
            active = read_active_leases(session, now)  # rare: an expired holder is gone
        units = {name: _Unit.of(row) for name, row in mirror(session, self.inventory, now).items()}
        gpu_pools = _gpu_pools(units.values())
        order = admission_order(
            [r for r in queued if r.id in needs], active.gpus_by_team, lambda r: claims[r.id].gpu
        )
        batch = GrantBatch()
        granted: list[tuple[TaskRow, _Plan, int, slice]] = []  # row, plan, token, its leases
        for row in order:
            if row.id in active.holders:
                decisions[row.id] = Admission(False, "already holds leases (admitted elsewhere)")
                continue
            want = claims[row.id]
            outcome = self._plan(row, want, units, gpu_pools, active.quota_used)
            if isinstance(outcome, _Blocked):
                for unit, mode in outcome.reserve:
                    unit.reserved = "rw" if mode == "rw" or unit.reserved == "rw" else "ro"
                decisions[row.id] = Admission(False, outcome.reason)
                continue
            token += 1
            first = len(batch.leases)
            self._add_leases(batch, row, want, outcome, token, now)
            granted.append((row, outcome, token, slice(first, len(batch.leases))))
            self._commit_plan(row, want, outcome, active.quota_used)
        batch.write(session)  # fills in the lease ids
        for row, plan, granted_token, leases in granted:
            decisions[row.id] = self._admission(plan, granted_token, batch.leases[leases])
        if token != issued:
            session.connection().execute(_SET_COUNTER, {"token": token})
        return decisions

    def release(self, session: Session, task_id: str, reason: str) -> None:
        # Most tasks hold nothing: they need not queue for the round lock. A lease granted
        # to a task after its terminal transition is reclaimed on expiry (holder gone).
        if session.scalar(
            select(LeaseRow.id)
            .where(LeaseRow.task_id == task_id, LeaseRow.released_at.is_(None))
            .limit(1)
        ):
            end_leases(session, LeaseRow.task_id == task_id, reason, self.clock)

    def heartbeat(self, session: Session, task_ids: list[str]) -> None:
        if not task_ids:
            return
        lock_round(session)
        expires = self.clock() + self.ttl
        for chunk in _chunks(task_ids):
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.task_id.in_(chunk), LeaseRow.released_at.is_(None))
                .values(expires_at=expires)
                .execution_options(synchronize_session=False)
            )

    def leases_of(self, session: Session, task_id: str) -> list[dict[str, Any]]:
        """The leases of the task's latest admission (released or not), for lineage."""
        latest = session.scalar(
            select(func.max(LeaseRow.fencing_token)).where(LeaseRow.task_id == task_id)
        )
        if latest is None:
            return []
        rows = session.scalars(
            select(LeaseRow)
            .where(LeaseRow.task_id == task_id, LeaseRow.fencing_token == latest)
            .order_by(LeaseRow.id)
            .execution_options(populate_existing=True)
        )
        return [lease_record(r) for r in rows]

    # -- maintenance ----------------------------------------------------------------------
    def sync(self, session: Session, now: datetime | None = None) -> None:
        """Mirror the inventory into the store (no writes when nothing changed)."""
        mirror(session, self.inventory, now or self.clock())

    def reclaim_expired(self, session: Session, is_holder_alive: HolderCheck) -> list[int]:
        """Release expired leases whose holder is confirmed gone; return their ids."""
        expired: list[Row[Any]] = list(
            session.connection().execute(_EXPIRED, {"now": self.clock()})
        )
        return self._reclaim(
            session, [(int(r.id), str(r.task_id)) for r in expired], is_holder_alive
        )

    def _reclaim(
        self, session: Session, expired: list[tuple[int, str]], is_holder_alive: HolderCheck
    ) -> list[int]:
        alive: dict[str, bool] = {}
        gone = [
            lease_id
            for lease_id, task_id in expired
            if not alive.setdefault(task_id, is_holder_alive(task_id))
        ]
        if not gone:
            return []
        ended = end_leases(session, _leases.c.id.in_(gone), "expired; holder gone", self.clock)
        return [lease_id for lease_id, *_ in ended]

    # -- a round, step by step ------------------------------------------------------------
    def _holders_alive(self, session: Session, expired: list[tuple[int, str]]) -> HolderCheck:
        """The holder check for a round's expired leases; the store's view in one SELECT."""
        if self._holder_check is not holder_alive_in_store:
            return self._holder_check(session)
        statuses: dict[str, str] = {}
        for chunk in _chunks(sorted({task_id for _id, task_id in expired})):
            rows: list[tuple[str, str]] = list(
                session.execute(select(TaskRow.id, TaskRow.status).where(TaskRow.id.in_(chunk)))
            )
            statuses.update(rows)
        return lambda task_id: statuses.get(task_id) in HOLDING_STATUSES

    def _claims_of(self, row: TaskRow) -> Claims:
        resources = row.spec.get("resources")
        known = self._claims.get(row.id)
        if known is not None and known[0] == resources:
            return known[1]
        want = Claims.of_spec(row.spec)
        if len(self._claims) >= _CLAIMS_CACHED:
            self._claims.clear()
        self._claims[row.id] = (copy.deepcopy(resources), want)
        return want

    def _needs_lease(self, row: TaskRow, want: Claims) -> bool:
        if want.leases_anything:
            return True
        return row.team in self._quotas and (want.cpu_milli or want.memory_bytes) is not None

    def _plan(
        self,
        row: TaskRow,
        want: Claims,
        units: dict[str, _Unit],
        gpu_pools: dict[str, list[_Unit]],
        quota_used: dict[str, list[int]],
    ) -> _Plan | _Blocked:
        plan = _Plan()
        waits: list[str] = []
        never: list[str] = []
        reserve: list[tuple[_Unit, str]] = []
        if want.gpu:
            self._plan_gpus(want, gpu_pools, plan, waits, never, reserve)
        for vol in _merged(want.volumes):
            unit = units.get(volume_unit(vol.claim))
            if unit is None or not unit.usable:
                never.append(f"volume {vol.claim} is not in the inventory")
                continue
            exclusive = unit.access == "RWO" or vol.mode == "rw"
            if unit.free_for(exclusive):
                plan.volumes.append((unit, vol, exclusive))
                continue
            waits.append(
                f"waiting for volume {vol.claim} ({vol.mode}, {unit.access}): " + _held_by(unit)
            )
            reserve.append((unit, "rw" if exclusive else "ro"))
        quota_wait = self._plan_quota(row.team, want, quota_used, plan, never)
        if never:
            return _Blocked("cannot ever start: " + "; ".join(never))
        if waits:
            return _Blocked(
                "; ".join(waits + ([quota_wait] if quota_wait else [])),
                reserve
                + [(u, "rw") for u in plan.gpus]
                + [(u, "rw" if ex else "ro") for u, _v, ex in plan.volumes],
            )
        if quota_wait:
            return _Blocked(quota_wait)  # quota is per team: it reserves nothing shared
        return plan

    def _plan_gpus(
        self,
        want: Claims,
        gpu_pools: dict[str, list[_Unit]],
        plan: _Plan,
        waits: list[str],
        never: list[str],
        reserve: list[tuple[_Unit, str]],
    ) -> None:
        pools = (
            gpu_pools
            if want.gpu_flavor is None
            else {
                p: matching
                for p, us in gpu_pools.items()
                if (matching := [u for u in us if u.flavor == want.gpu_flavor])
            }
        )
        if not pools:
            never.append(
                f"no gpu of flavor {want.gpu_flavor or 'any'} in the inventory"
                + ("" if self._has_gpus else " (set TRACECTL_INVENTORY_FILE)")
            )
            return
        fitting = {p: us for p, us in pools.items() if len(us) >= want.gpu}
        if not fitting:
            largest = max(len(us) for us in pools.values())
            never.append(f"{want.describe_gpu()} on one node: the largest pool has {largest}")
            return
        free = {p: [u for u in us if u.free_for(True)] for p, us in fitting.items()}
        # best fit: the pool with the fewest free GPUs that still fit keeps big holes open
        fits = sorted(
            (p for p in fitting if len(free[p]) >= want.gpu), key=lambda p: (len(free[p]), p)
        )
        if fits:
            plan.gpus = free[fits[0]][: want.gpu]
            return
        best = max(fitting, key=lambda p: (len(free[p]), p))
        reserved = sum(1 for u in fitting[best] if u.reserved and u.exclusive_holder is None)
        waits.append(
            f"waiting for {want.describe_gpu()}: {len(free[best])} free"
            + (f", {reserved} reserved for earlier tasks" if reserved else "")
        )
        reserve.extend((u, "rw") for u in free[best])

    def _plan_quota(
        self, team: str, want: Claims, used: dict[str, list[int]], plan: _Plan, never: list[str]
    ) -> str | None:
        if team not in self._quotas or (want.cpu_milli or want.memory_bytes) is None:
            return None
        cap_cpu, cap_mem = self._quotas[team]
        cpu, mem = used.get(team, [0, 0])
        parts, over = [], False
        for label, asked, in_use, cap, fmt in (
            ("cpu", want.cpu_milli, cpu, cap_cpu, _cpu),
            ("memory", want.memory_bytes, mem, cap_mem, _bytes),
        ):
            if asked is None or cap is None:
                continue
            if asked > cap:
                never.append(f"{label} {fmt(asked)} exceeds team {team}'s quota of {fmt(cap)}")
            elif in_use + asked > cap:
                over = True
                parts.append(f"{label} {fmt(in_use)}/{fmt(cap)} in use, needs {fmt(asked)}")
        plan.quota = quota_unit(team)
        return f"waiting for team {team} quota: " + ", ".join(parts) if over else None

    def _add_leases(
        self, batch: GrantBatch, row: TaskRow, want: Claims, plan: _Plan, token: int, now: datetime
    ) -> None:
        common = {
            "team": row.team,
            "attempt": row.attempt + 1,
            "fencing_token": token,
            "granted_at": now,
            "expires_at": now + self.ttl,
        }
        for unit in plan.gpus:
            batch.add_lease(row.id, unit.name, True, kind="gpu", mode="rw", **common)
        for unit, vol, exclusive in plan.volumes:
            batch.add_lease(row.id, unit.name, exclusive, kind="volume", mode=vol.mode, **common)
        if plan.quota:
            batch.add_lease(
                row.id,
                plan.quota,
                False,
                kind="quota",
                mode="ro",
                cpu_milli=want.cpu_milli,
                memory_bytes=want.memory_bytes,
                **common,
            )

    def _admission(self, plan: _Plan, token: int, leases: list[dict[str, Any]]) -> Admission:
        records = [lease_record_of(x) for x in leases]
        devices = ",".join(str(u.gpu_index) for u in plan.gpus)
        env = {
            "TRACECTL_FENCING_TOKEN": str(token),
            "TRACECTL_LEASES": json.dumps(
                [{k: r[k] for k in ("id", "resource", "mode", "fencing_token")} for r in records]
            ),
            "TRACECTL_VOLUMES": json.dumps(
                [
                    {"claim": v.claim, "mode": v.mode, "mount_path": v.mount_path}
                    for _u, v, _e in plan.volumes
                ]
            ),
        }
        if plan.gpus or self._has_gpus:
            env["CUDA_VISIBLE_DEVICES"] = devices
            env["NVIDIA_VISIBLE_DEVICES"] = devices or "void"
        if plan.gpus:
            env["TRACECTL_GPU_POOL"] = plan.gpus[0].pool
        return Admission(True, env=env, leases=records)

    @staticmethod
    def _commit_plan(
        row: TaskRow, want: Claims, plan: _Plan, quota_used: dict[str, list[int]]
    ) -> None:
        for unit in plan.gpus:
            unit.exclusive_holder = row.id
        for unit, _vol, exclusive in plan.volumes:
            if exclusive:
                unit.exclusive_holder = row.id
            else:
                unit.shared_holders += 1
        if plan.quota:
            used = quota_used.setdefault(row.team, [0, 0])
            used[0] += want.cpu_milli or 0
            used[1] += want.memory_bytes or 0


def lock_round(session: Session) -> int:
    """Take the round lock (the fencing counter row) and return the last token issued.

    Every writer of leases takes it first, so there is one lock order (counter, then unit
    rows) and PostgreSQL can never find a deadlock between a release and a round. SQLite
    renders no FOR UPDATE: its BEGIN IMMEDIATE already made the transaction the only writer.
    """
    # The round reads and writes through Core, which does not autoflush: pending ORM
    # changes of the caller (tasks, leases) go to the database first, as session.execute
    # would have sent them.
    session.flush()
    value = session.connection().execute(_LOCK_ROUND).scalar()
    if value is None:
        raise RuntimeError("lease_counters has no 'fencing' row: run the migrations")
    return int(value)


def end_leases(
    session: Session, which: ColumnElement[bool], reason: str, clock: Clock
) -> list[tuple[int, str, str, bool]]:
    """Release the active leases `which` selects and give their units back.

    The UPDATE ... RETURNING names only the leases this statement really ended, so two
    racing releases of one lease give its unit back once. Unit updates are relative (or
    guarded by the holder), which keeps them right beside a concurrent grant.
    """
    lock_round(session)
    rows = session.connection().execute(  # Core: no ORM objects to keep in step
        update(_leases)
        .where(which, _leases.c.released_at.is_(None))
        .values(released_at=clock(), release_reason=reason)  # read under the lock
        .returning(_leases.c.id, _leases.c.task_id, _leases.c.resource, _leases.c.is_exclusive)
    )
    ended = [(int(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]
    if ended:
        give_back(session, ended)
    return ended


def lease_record(row: LeaseRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "task_id": row.task_id,
        "team": row.team,
        "attempt": row.attempt,
        "resource": row.resource,
        "kind": row.kind,
        "mode": row.mode,
        "exclusive": row.is_exclusive,
        "fencing_token": row.fencing_token,
        "cpu_milli": row.cpu_milli,
        "memory_bytes": row.memory_bytes,
        "granted_at": row.granted_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "released_at": row.released_at.isoformat() if row.released_at else None,
        "release_reason": row.release_reason,
    }


def lease_record_of(values: dict[str, Any]) -> dict[str, Any]:
    """lease_record() of a lease just granted, from the values it was inserted with."""
    return {
        "id": values["id"],
        "task_id": values["task_id"],
        "team": values["team"],
        "attempt": values["attempt"],
        "resource": values["resource"],
        "kind": values["kind"],
        "mode": values["mode"],
        "exclusive": values["is_exclusive"],
        "fencing_token": values["fencing_token"],
        "cpu_milli": values["cpu_milli"],
        "memory_bytes": values["memory_bytes"],
        "granted_at": values["granted_at"].isoformat(),
        "expires_at": values["expires_at"].isoformat(),
        "released_at": None,
        "release_reason": None,
    }


def holder_alive_in_store(session: Session) -> HolderCheck:
    """Holder liveness as the store knows it: the task is still STARTING or RUNNING."""

    def alive(task_id: str) -> bool:
        status = session.scalar(select(TaskRow.status).where(TaskRow.id == task_id))
        return status in HOLDING_STATUSES

    return alive


def _gpu_pools(units: Iterable[_Unit]) -> dict[str, list[_Unit]]:
    """The usable GPUs by pool, in index order: grouped once per round, not per task."""
    pools: dict[str, list[_Unit]] = {}
    for unit in units:
        if unit.kind == "gpu" and unit.usable:
            pools.setdefault(unit.pool, []).append(unit)
    return {p: sorted(us, key=lambda u: u.gpu_index or 0) for p, us in pools.items()}


def _merged(volumes: Iterable[VolumeWant]) -> list[VolumeWant]:
    """One want per claim: a claim named twice is leased once, `rw` if either asks it."""
    merged: dict[str, VolumeWant] = {}
    for vol in volumes:
        prev = merged.get(vol.claim)
        if prev is None or (vol.mode == "rw" and prev.mode != "rw"):
            merged[vol.claim] = vol
    return list(merged.values())


def _held_by(unit: _Unit) -> str:
    if unit.exclusive_holder:
        return f"held by task {unit.exclusive_holder}"
    if not unit.usable:
        return "left the inventory"
    if unit.reserved == "rw":
        return "reserved for an earlier task"
    return f"{unit.shared_holders} reader(s) hold it"


def _cpu(milli: int) -> str:
    return f"{milli / 1000:g}"


def _bytes(value: int) -> str:
    return f"{value / 2**30:.3g}Gi"


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def force_release(
    session: Session, lease_id: int, reason: str, actor: str, clock: Clock = utcnow
) -> LeaseRow | None:
    """An operator takes a lease back (its holder keeps running, now without it).

    Returns None when the lease does not exist; raises LeaseAlreadyReleased when it ended.
    The audit row goes in the same transaction as the release.
    """
    if not end_leases(session, LeaseRow.id == lease_id, f"force-released: {reason}", clock):
        lease = session.get(LeaseRow, lease_id)
        if lease is None:
            return None
        raise LeaseAlreadyReleased(lease)
    lease = session.scalar(
        select(LeaseRow).where(LeaseRow.id == lease_id).execution_options(populate_existing=True)
    )
    assert lease is not None
    session.add(
        AuditRow(
            actor=actor,
            action="lease.force_release",
            target=f"lease:{lease_id}",
            detail={
                "reason": reason,
                "task_id": lease.task_id,
                "resource": lease.resource,
                "fencing_token": lease.fencing_token,
            },
            created_at=lease.released_at,
        )
    )
    return lease


class LeaseAlreadyReleased(Exception):
    def __init__(self, lease: LeaseRow) -> None:
        super().__init__(f"lease {lease.id} was already released ({lease.release_reason})")
        self.lease = lease
