"""Lease admission under contention: decisions/s, grant latency, double grants.

    python bench/leases.py                          # SQLite, 1 / 50 / 200 contenders
    python bench/leases.py --postgres-url postgresql+psycopg://...   # and PostgreSQL
    (or set TRACECTL_POSTGRES_URL)

Each contender is a controller of its own: its own Database object and LeaseAdmitter on the
same store, spread over several OS processes. In a loop it runs one write transaction (one
admission round): top its queue up to `--batch` tasks with random claims (one multi-row
INSERT: submission), read its queued tasks, end the leases whose hold time (`--hold-ms`,
the lease TTL) is over, as a supervisor ends a task it saw exit (`reclaim_expired`), let
the admitter decide on all queued tasks, and mark the admitted ones running (one UPDATE).
A decision is one queued task granted or refused in a round; a task refused in one round
and decided again in the next counts once per round, as the admitter did the work twice.
granted_at / released_at are read under the store's write lock (SQLite) or the round lock
(PostgreSQL), so they follow the commit order, and two overlapping holds of one exclusive
unit would show in them; a sampler also reads the live lease table many times a second.
The JSON result on stdout carries the command line and the machine.

The same `run()` backs tests/leases/test_concurrency.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, insert, select, text, update
from sqlalchemy.engine import make_url

from bench.machine import load, machine
from bench.stats import percentile
from controller.scheduling.inventory import GpuPool, Inventory, Volume
from controller.scheduling.leases import LeaseAdmitter
from controller.store.database import Database
from controller.store.lease_schema import LeaseCounterRow, LeaseRow, ResourceRow
from controller.store.schema import RunRow, TaskRow

START_DELAY_S = 0.2
INVENTORY = Inventory(
    gpu_pools=[GpuPool(name="node-a", count=4), GpuPool(name="node-b", count=4)],
    volumes=[Volume(claim=f"rwo-{i}", access="RWO") for i in range(4)]
    + [Volume(claim=f"rwx-{i}", access="RWX") for i in range(2)],
)


@dataclass
class Result:
    decisions: int = 0
    grants: int = 0
    rounds: int = 0
    round_latency_s: list[float] = field(default_factory=list)
    grant_latency_s: list[float] = field(default_factory=list)  # round that granted
    wait_s: list[float] = field(default_factory=list)  # submitted -> granted
    cpu_s: float = 0.0  # CPU time of the contender threads (client side only)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: Result) -> None:
        self.decisions += other.decisions
        self.grants += other.grants
        self.rounds += other.rounds
        self.round_latency_s += other.round_latency_s
        self.grant_latency_s += other.grant_latency_s
        self.wait_s += other.wait_s
        self.cpu_s += other.cpu_s
        self.errors += other.errors


def random_claims(rng: random.Random) -> dict[str, Any]:
    volumes = []
    if rng.random() < 0.5:
        volumes.append({"claim": f"rwo-{rng.randrange(4)}", "mode": "rw"})
    if rng.random() < 0.5:
        volumes.append(
            {"claim": f"rwx-{rng.randrange(2)}", "mode": "rw" if rng.random() < 0.2 else "ro"}
        )
    gpu = rng.choice([0, 1, 1, 2, 4]) if volumes else rng.choice([1, 1, 2, 4])
    return {"gpu": gpu, "volumes": volumes}


def prepare(url: str) -> None:
    """A migrated, empty lease store with one run to hang tasks on."""
    db = Database(url)
    db.migrate()
    with db.write() as session:
        session.execute(delete(LeaseRow))
        session.execute(delete(ResourceRow))
        session.execute(delete(TaskRow).where(TaskRow.run_id == "bench"))
        if session.get(RunRow, "bench") is None:
            session.add(RunRow(id="bench", pipeline="bench", status="running", labels={}))
    db.dispose()


@contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """A fresh database next to `url`'s, dropped afterwards: the bench wipes its tables."""
    base = make_url(url)
    name = f"tracectl_leases_{os.getpid()}_{random.randrange(10**6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(admin, name)
        admin.dispose()


def _drop(admin: Any, name: str) -> None:
    for attempt in range(10):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except Exception as exc:  # e.g. a straggling connection; retry, then leave it
            if attempt == 9:
                print(f"could not drop scratch database {name}: {exc}", file=sys.stderr)
            time.sleep(1)


def contend(
    url: str,
    name: str,
    seconds: float,
    batch: int,
    hold_s: float,
    seed: int,
    db: Database | None = None,
    start_at: float = 0.0,
) -> Result:
    """One contender: admission rounds until `seconds` have passed.

    A granted task "runs" for its lease TTL (`hold_s`, jittered per contender); the first
    round of any contender after that reclaims it as finished, the way a supervisor
    releases a task whose process it saw exit.
    """
    own_db = db is None
    db = db or Database(url)
    rng = random.Random(seed)
    admitter = LeaseAdmitter(INVENTORY, lease_ttl_s=hold_s * rng.uniform(0.5, 1.5))
    result = Result()
    queued: dict[str, float] = {}  # task -> submitted at (perf_counter)
    counter = 0
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.monotonic() + seconds
    cpu0 = time.thread_time()
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            added: list[str] = []
            granted: list[str] = []
            try:
                with db.write() as session:
                    new_tasks: list[dict[str, Any]] = []
                    while len(queued) + len(new_tasks) < batch:
                        counter += 1
                        new_tasks.append(_new_task(f"{name}-{counter}", rng))
                    added = [t["id"] for t in new_tasks]
                    if new_tasks:  # submission, batched: not what this bench measures
                        session.execute(insert(TaskRow), new_tasks)
                    # as the supervisor does: read the queue, then the admitter's round
                    # (which takes the round lock) in the same transaction
                    rows = list(
                        session.scalars(
                            select(TaskRow)
                            .where(TaskRow.id.in_(list(queued) + added))
                            .order_by(TaskRow.priority.desc(), TaskRow.queued_at, TaskRow.id)
                        )
                    )
                    admitter.reclaim_expired(session, _finished)
                    decisions = admitter.admit(session, rows)
                    granted = [row.id for row in rows if decisions[row.id].admitted]
                    if granted:  # as the supervisor does: the admitted task starts
                        session.execute(
                            update(TaskRow).where(TaskRow.id.in_(granted)).values(status="running")
                        )
                    decided = len(rows)
            except Exception as exc:  # a contender that fails is reported, not hidden
                result.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                counter -= len(added)
                continue
            # the round committed: now its effects count
            now = time.perf_counter()
            elapsed = now - t0
            for task_id in added:
                queued[task_id] = t0
            for task_id in granted:
                result.grants += 1
                result.grant_latency_s.append(elapsed)
                result.wait_s.append(now - queued.pop(task_id))
            result.decisions += decided
            result.rounds += 1
            result.round_latency_s.append(elapsed)
    finally:
        result.cpu_s = time.thread_time() - cpu0
        if own_db:
            db.dispose()
    return result


def _new_task(task_id: str, rng: random.Random) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": task_id,
        "run_id": "bench",
        "name": task_id,
        "team": f"team-{rng.randrange(3)}",
        "spec": {"command": ["true"], "resources": random_claims(rng)},
        "resolved": {},
        "status": "queued",
        "queued_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _finished(_task_id: str) -> bool:
    return False  # past its hold time, a bench task has finished


def _contend_many(
    url: str,
    names: list[str],
    seconds: float,
    batch: int,
    hold_s: float,
    share_engine: bool,
    start_at: float,
    barrier: Any = None,
) -> Result:
    """A process of contenders (threads); on PostgreSQL they share one engine (pool)."""
    shared = Database(url) if share_engine else None
    if barrier is not None:  # every process has imported everything: start together
        barrier.wait(timeout=900)
        start_at = time.time() + START_DELAY_S
    results = [Result() for _ in names]

    def run_one(i: int) -> None:
        results[i] = contend(
            url, names[i], seconds, batch, hold_s, seed=hash(names[i]), db=shared, start_at=start_at
        )

    threads = [threading.Thread(target=run_one, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if shared is not None:
        shared.dispose()
    total = Result()
    for r in results:
        total.merge(r)
    return total


class Sampler(threading.Thread):
    """Reads the live lease table again and again; counts moments with a double grant."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.db = Database(url)
        self.stop = threading.Event()
        self.samples = 0
        self.violations: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            with self.db.read() as session:
                rows = session.execute(
                    select(LeaseRow.resource, LeaseRow.is_exclusive).where(
                        LeaseRow.released_at.is_(None)
                    )
                ).all()
            exclusive: dict[str, int] = defaultdict(int)
            shared: dict[str, int] = defaultdict(int)
            for resource, is_exclusive in rows:
                (exclusive if is_exclusive else shared)[resource] += 1
            for resource, count in exclusive.items():
                if count > 1 or shared.get(resource):
                    self.violations.append(
                        f"{resource}: {count} exclusive, "
                        f"{shared.get(resource, 0)} shared at one instant"
                    )
            self.samples += 1
            time.sleep(0.005)
        self.db.dispose()


def double_grants(url: str) -> list[str]:
    """Exclusive holds that overlap any other hold of the same unit.

    granted_at and released_at are read under the write lock (SQLite) or the round lock
    (PostgreSQL), so they follow the commit order: two holds that really coexisted in the
    store overlap here too.
    """
    far = datetime.max.replace(tzinfo=UTC)
    by_unit: dict[str, list[tuple[datetime, datetime, bool, str]]] = defaultdict(list)
    db = Database(url)
    with db.read() as session:
        for resource, exclusive, start, end, task in session.execute(
            select(
                LeaseRow.resource,
                LeaseRow.is_exclusive,
                LeaseRow.granted_at,
                LeaseRow.released_at,
                LeaseRow.task_id,
            )
        ):
            by_unit[resource].append((start, end or far, bool(exclusive), task))
    db.dispose()
    found = []
    for resource, spans in by_unit.items():
        spans.sort()
        still_open: list[tuple[datetime, bool, str]] = []
        for start, end, exclusive, task in spans:
            still_open = [h for h in still_open if h[0] > start]
            for _end, other_exclusive, other in still_open:
                if exclusive or other_exclusive:
                    found.append(f"{resource}: {other} and {task} held it at once")
            still_open.append((end, exclusive, task))
    return found


def run(
    url: str,
    contenders: int,
    seconds: float,
    processes: int,
    batch: int = 4,
    hold_s: float = 0.005,
    threads_in_parent: int = 0,
) -> dict[str, Any]:
    """`contenders` spread over `processes` OS processes plus `threads_in_parent` threads."""
    prepare(url)
    share = not url.startswith("sqlite")
    names = [f"c{i}" for i in range(contenders)]
    parent_names = names[:threads_in_parent]
    child_names = names[threads_in_parent:]
    groups = [child_names[i::processes] for i in range(processes)] if processes else []
    groups = [g for g in groups if g]
    sampler = Sampler(url)
    sampler.start()
    total = Result()
    spawn = get_context("spawn")
    with (
        spawn.Manager() as manager,
        ProcessPoolExecutor(max_workers=max(1, len(groups)), mp_context=spawn) as pool,
    ):
        barrier = manager.Barrier(len(groups) + 1)
        futures = [
            pool.submit(_contend_many, url, g, seconds, batch, hold_s, share, 0.0, barrier)
            for g in groups
        ]
        barrier.wait(timeout=900)
        start_at = time.time() + START_DELAY_S
        if parent_names:
            total.merge(_contend_many(url, parent_names, seconds, batch, hold_s, share, start_at))
        for f in futures:
            total.merge(f.result())
        # rounds begun before the deadline may end after it: rates use the real span
        span = time.time() - start_at
    sampler.stop.set()
    sampler.join()
    overlaps = double_grants(url)
    db = Database(url)
    with db.read() as session:
        tokens = [
            t for (t,) in session.execute(select(LeaseRow.fencing_token).order_by(LeaseRow.id))
        ]
        counter = session.scalar(select(LeaseCounterRow.value))
    db.dispose()
    return {
        "backend": "sqlite" if url.startswith("sqlite") else "postgresql",
        "contenders": contenders,
        "processes": len(groups) + (1 if parent_names else 0),
        "seconds": seconds,
        "batch": batch,
        "decisions": total.decisions,
        "grants": total.grants,
        "rounds": total.rounds,
        "decisions_per_s": round(total.decisions / span, 1),
        "grants_per_s": round(total.grants / span, 1),
        "rounds_per_s": round(total.rounds / span, 1),
        "client_cpu_ms_per_round": round(1000 * total.cpu_s / max(1, total.rounds), 2),
        "decisions_per_client_cpu_s": round(total.decisions / max(total.cpu_s, 1e-9), 1),
        "grant_latency_ms": _percentiles(total.grant_latency_s),
        "round_latency_ms": _percentiles(total.round_latency_s),
        "queue_wait_ms": _percentiles(total.wait_s),
        "double_grants": len(overlaps) + len(sampler.violations),
        "double_grant_examples": (overlaps + sampler.violations)[:5],
        "sampler_reads": sampler.samples,
        "tokens_monotonic": tokens == sorted(tokens) and (not tokens or counter == max(tokens)),
        "errors": len(total.errors),
        "error_examples": total.errors[:5],
        "span_s": round(span, 2),
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    return {
        "p50": round(percentile(values, 0.5) * 1000, 3),
        "p99": round(percentile(values, 0.99) * 1000, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contenders", default="1,50,200")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="queued tasks per contender")
    parser.add_argument("--hold-ms", type=float, default=5.0, help="mean lease hold time")
    parser.add_argument("--sqlite-dir", default=None)
    parser.add_argument("--postgres-url", default=os.environ.get("TRACECTL_POSTGRES_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)
    load_at_start = load()
    backends = [] if args.no_sqlite else ["sqlite"]
    if args.postgres_url:
        backends.append(args.postgres_url)
    runs = []
    for backend in backends:
        for n in (int(x) for x in args.contenders.split(",")):
            procs = min(args.processes, n) if n > 1 else 0

            def one(url: str, n: int = n, procs: int = procs) -> dict[str, Any]:
                return run(
                    url,
                    n,
                    args.seconds,
                    procs,
                    args.batch,
                    args.hold_ms / 1000,
                    threads_in_parent=1 if n == 1 else 0,
                )

            if backend == "sqlite":
                tmp = Path(args.sqlite_dir or tempfile.mkdtemp(prefix="bench-leases-"))
                runs.append(one(f"sqlite:///{tmp / f'leases-{n}.db'}"))
                if args.sqlite_dir is None:
                    shutil.rmtree(tmp, ignore_errors=True)
            else:
                with scratch_postgres(backend) as url:
                    runs.append(one(url))
            print(json.dumps(runs[-1]), file=sys.stderr)
    redacted = [a if "://" not in a else a.split("://")[0] + "://…" for a in sys.argv]
    print(
        json.dumps(
            {
                "command": " ".join(["python", *redacted]),
                "machine": machine(load_at_start),
                "at": datetime.now(UTC).isoformat(),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
