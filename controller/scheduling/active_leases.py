"""What the active leases mean to one admission round, read with one SELECT.

A round needs four facts about the leases that are held now: which queued tasks already
hold some, how many GPUs each team holds (fair share), how much of each team's quota is
used, and which leases have expired. They all come from the same rows, so the round reads
those rows once (Core, no ORM objects) instead of running four aggregate queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, select
from sqlalchemy.orm import Session

from controller.store.lease_schema import LeaseRow

_leases = cast(Table, LeaseRow.__table__)
_ACTIVE = select(
    _leases.c.id,
    _leases.c.task_id,
    _leases.c.team,
    _leases.c.kind,
    _leases.c.cpu_milli,
    _leases.c.memory_bytes,
    _leases.c.expires_at,
).where(_leases.c.released_at.is_(None))


@dataclass
class ActiveLeases:
    holders: set[str] = field(default_factory=set)
    gpus_by_team: dict[str, int] = field(default_factory=dict)
    quota_used: dict[str, list[int]] = field(default_factory=dict)  # team -> [cpu, memory]
    expired: list[tuple[int, str]] = field(default_factory=list)  # (lease id, task id)


def read_active_leases(session: Session, now: datetime) -> ActiveLeases:
    active = ActiveLeases()
    rows: list[Row[Any]] = list(session.connection().execute(_ACTIVE))
    for row in rows:
        active.holders.add(row.task_id)
        if row.kind == "gpu":
            active.gpus_by_team[row.team] = active.gpus_by_team.get(row.team, 0) + 1
        elif row.kind == "quota":
            used = active.quota_used.setdefault(row.team, [0, 0])
            used[0] += row.cpu_milli or 0
            used[1] += row.memory_bytes or 0
        if row.expires_at < now:
            active.expired.append((row.id, row.task_id))
    return active
