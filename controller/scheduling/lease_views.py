"""Read models of the lease system: leases, resources and the queue, as the API shows them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.scheduling.admission import Admitter
from controller.scheduling.claims import Claims
from controller.scheduling.fair_share import admission_order
from controller.scheduling.inventory import quota_unit, volume_unit
from controller.scheduling.leases import lease_record
from controller.store.lease_schema import LeaseRow, ResourceRow
from controller.store.schema import TaskRow


def list_leases(
    session: Session,
    scope: Scope,
    active_only: bool,
    task_id: str | None,
    resource: str | None,
    limit: int,
    after_id: int,
) -> dict[str, Any]:
    query = select(LeaseRow).where(LeaseRow.id > after_id).order_by(LeaseRow.id)
    if scope.team is not None:
        query = query.where(LeaseRow.team == scope.team)
    if active_only:
        query = query.where(LeaseRow.released_at.is_(None))
    if task_id:
        query = query.where(LeaseRow.task_id == task_id)
    if resource:
        query = query.where(LeaseRow.resource == resource)
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    items = [lease_record(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if more and items else None}


def task_leases(session: Session, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every lease of each task (all attempts, in grant order) as `GET /v1/leases` shows it.

    The one read of leases for every other view (task and run lineage, passport,
    OpenLineage facets): a lease's release is written to its row only, so a copy taken at
    grant or at the task's end would show it held forever.
    """
    found: dict[str, list[dict[str, Any]]] = {task_id: [] for task_id in task_ids}
    query = select(LeaseRow).where(LeaseRow.task_id.in_(task_ids)).order_by(LeaseRow.id)
    for row in session.scalars(query.execution_options(populate_existing=True)):
        found[row.task_id].append(lease_record(row))
    return found


def queued_rows(session: Session) -> list[TaskRow]:
    return list(
        session.scalars(
            select(TaskRow)
            .where(TaskRow.status == "queued")
            .order_by(TaskRow.priority.desc(), TaskRow.queued_at, TaskRow.id)
        )
    )


def queue_order(session: Session, admitter: Admitter) -> tuple[list[TaskRow], dict[str, Claims]]:
    """Queued tasks in the order the admitter considers them, and what each one claims.

    The admitter's own order (controller/scheduling/fair_share.py): priority, then fair
    share between teams by GPUs held plus GPUs placed ahead, then FIFO. Both `/v1/queue`
    and the `queue.position` of `GET /v1/tasks/{id}` come from here, so they agree.
    """
    rows = queued_rows(session)
    claims = {r.id: Claims.of_spec(r.spec) for r in rows}
    if not _leases(admitter):
        return rows, claims
    return admission_order(rows, _gpus_held(session), lambda r: claims[r.id].gpu), claims


def queue_positions(session: Session, admitter: Admitter) -> dict[str, int]:
    """Task id -> 1-based position in the admission order, for every queued task."""
    ordered, _claims = queue_order(session, admitter)
    return {row.id: position for position, row in enumerate(ordered, start=1)}


def queue(session: Session, admitter: Admitter, scope: Scope) -> dict[str, Any]:
    """Queued tasks in the order the admitter will consider them, with their last reason.

    A team sees its own tasks at their places in the whole queue; `length` counts them all.
    """
    ordered, claims = queue_order(session, admitter)
    items = []
    for position, row in enumerate(ordered, start=1):
        if not scope.sees(row.team):
            continue
        want = claims[row.id]
        items.append(
            {
                "position": position,
                "task_id": row.id,
                "run_id": row.run_id,
                "name": row.name,
                "team": row.team,
                "priority": row.priority,
                "queued_at": row.queued_at.isoformat() if row.queued_at else None,
                "not_before": row.not_before.isoformat() if row.not_before else None,
                "reason": row.reason or "waiting for the next admission round",
                "claims": {
                    "gpu": want.gpu,
                    "gpu_flavor": want.gpu_flavor,
                    "volumes": [{"claim": v.claim, "mode": v.mode} for v in want.volumes],
                    "cpu_milli": want.cpu_milli,
                    "memory_bytes": want.memory_bytes,
                },
            }
        )
    return {"items": items, "length": len(ordered)}


def resources(session: Session, scope: Scope) -> dict[str, Any]:
    """Every unit with capacity, use, holders and the queued demand for it.

    Another team's holder shows its team and mode, not which lease or task holds the unit.
    """
    holders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lease in session.scalars(
        select(LeaseRow).where(LeaseRow.released_at.is_(None)).order_by(LeaseRow.id)
    ):
        mine = scope.sees(lease.team)
        holders[lease.resource].append(
            {
                "lease_id": lease.id if mine else None,
                "task_id": lease.task_id if mine else None,
                "team": lease.team,
                "mode": lease.mode,
                "fencing_token": lease.fencing_token,
                "expires_at": lease.expires_at.isoformat(),
                "cpu_milli": lease.cpu_milli,
                "memory_bytes": lease.memory_bytes,
            }
        )
    queued = [(r, Claims.of_spec(r.spec)) for r in queued_rows(session)]
    demand: dict[str, int] = defaultdict(int)
    for row, want in queued:
        for vol in want.volumes:
            demand[volume_unit(vol.claim)] += 1
        if want.cpu_milli or want.memory_bytes:
            demand[quota_unit(row.team)] += 1
    units = list(session.scalars(select(ResourceRow).order_by(ResourceRow.name)))
    items = []
    pools: dict[str, dict[str, Any]] = {}
    for unit in units:
        held = holders.get(unit.name, [])
        item: dict[str, Any] = {
            "name": unit.name,
            "kind": unit.kind,
            "pool": unit.pool,
            "flavor": unit.flavor,
            "gpu_index": unit.gpu_index,
            "access": unit.access,
            "in_inventory": unit.in_inventory,
            "holders": held,
            "holder_task": _holder_task(unit, held, scope),
            "queued_demand": demand.get(unit.name, 0),
        }
        if unit.kind == "quota":
            item["capacity"] = {"cpu_milli": unit.cpu_milli, "memory_bytes": unit.memory_bytes}
            item["in_use"] = {
                "cpu_milli": sum(h["cpu_milli"] or 0 for h in held),
                "memory_bytes": sum(h["memory_bytes"] or 0 for h in held),
            }
        else:
            item["capacity"] = 1 if unit.access == "RWO" else None  # RWX: readers unbounded
            item["in_use"] = 1 if unit.exclusive_holder else unit.shared_holders
        items.append(item)
        if unit.kind == "gpu" and unit.in_inventory:
            pool = pools.setdefault(
                unit.pool,
                {
                    "pool": unit.pool,
                    "flavor": unit.flavor,
                    "capacity": 0,
                    "in_use": 0,
                    "queued_demand": 0,
                },
            )
            pool["capacity"] += 1
            pool["in_use"] += 1 if unit.exclusive_holder else 0
    for _row, want in queued:
        for pool in pools.values():
            if want.gpu and (want.gpu_flavor in (None, pool["flavor"])):
                pool["queued_demand"] += want.gpu
    for pool in pools.values():
        pool["free"] = pool["capacity"] - pool["in_use"]
    return {"items": items, "gpu_pools": list(pools.values())}


def _holder_task(unit: ResourceRow, held: list[dict[str, Any]], scope: Scope) -> str | None:
    """The exclusive holder's task id, unless it is another team's (its holder is masked)."""
    if scope.team is None or any(h["task_id"] == unit.exclusive_holder for h in held):
        return unit.exclusive_holder
    return None


def _gpus_held(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(LeaseRow.team, func.count())
        .where(LeaseRow.released_at.is_(None), LeaseRow.kind == "gpu")
        .group_by(LeaseRow.team)
    ).all()
    return {team: int(count) for team, count in rows}


def _leases(admitter: Admitter) -> bool:
    from controller.scheduling.leases import LeaseAdmitter

    return isinstance(admitter, LeaseAdmitter)
