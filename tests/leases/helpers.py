"""Shared by the lease tests: a store with tasks in it, a fake clock, an interval checker."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from controller.scheduling.inventory import GpuPool, Inventory, Quota, Volume
from controller.store.database import Database
from controller.store.lease_schema import LeaseRow, ResourceRow
from controller.store.schema import RunRow, TaskRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def inventory(
    gpus: int = 2,
    flavor: str = "nvidia.com/gpu",
    rwo: Iterable[str] = ("scratch",),
    rwx: Iterable[str] = ("datasets",),
    quotas: dict[str, Quota] | None = None,
    pools: int = 1,
) -> Inventory:
    return Inventory(
        gpu_pools=[GpuPool(name=f"pool{i}", flavor=flavor, count=gpus) for i in range(pools)],
        volumes=[Volume(claim=c, access="RWO") for c in rwo]
        + [Volume(claim=c, access="RWX") for c in rwx],
        quotas=quotas or {},
    )


def migrated(url: str) -> Database:
    db = Database(url)
    db.migrate()
    return db


def spec(
    gpu: int = 0,
    volumes: Iterable[tuple[str, str]] = (),
    flavor: str | None = None,
    cpu: float | None = None,
    memory: str | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "gpu": gpu,
        "volumes": [{"claim": c, "mode": m} for c, m in volumes],
    }
    if flavor:
        resources["gpu_flavor"] = flavor
    if cpu is not None:
        resources["cpu"] = cpu
    if memory is not None:
        resources["memory"] = memory
    return {"command": ["true"], "resources": resources}


def add_task(
    session: Any,
    task_id: str,
    team: str = "default",
    priority: int = 0,
    queued_at: datetime = T0,
    **claims: Any,
) -> TaskRow:
    if session.get(RunRow, "run") is None:
        session.add(RunRow(id="run", pipeline="p", status="running", labels={}))
        session.flush()
    row = TaskRow(
        id=task_id,
        run_id="run",
        name=task_id,
        team=team,
        spec=spec(**claims),
        resolved={},
        status="queued",
        priority=priority,
        queued_at=queued_at,
    )
    session.add(row)
    session.flush()
    return row


def active_leases(session: Any) -> list[LeaseRow]:
    return list(session.scalars(select(LeaseRow).where(LeaseRow.released_at.is_(None))))


def resource_rows(session: Any) -> dict[str, ResourceRow]:
    return {r.name: r for r in session.scalars(select(ResourceRow))}


def overlaps(intervals: dict[str, list[tuple[float, float, str]]]) -> list[str]:
    """Pairs of exclusive holds on one resource whose [grant, release) intervals overlap."""
    found = []
    for resource, spans in intervals.items():
        spans = sorted(spans)
        for (a0, a1, who_a), (b0, _b1, who_b) in itertools.pairwise(spans):
            if b0 < a1:
                found.append(f"{resource}: {who_a} [{a0}, {a1}) and {who_b} from {b0}")
    return found
