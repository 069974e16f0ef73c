"""Admission order: priority first, then fair share between teams, then FIFO.

Within one priority, the next task goes to the team with the smallest GPU load, where load
is the GPUs the team holds now plus the GPUs of its tasks already placed ahead in this
order; ties go to the team whose oldest task waits longest. Inside a team the order is FIFO
(queued_at, then id). A team that holds many GPUs therefore yields to a team that holds
few, but never to a lower priority.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import groupby

from controller.store.schema import TaskRow


def admission_order(
    queued: Sequence[TaskRow], gpus_held: Mapping[str, int], gpus_of: Callable[[TaskRow], int]
) -> list[TaskRow]:
    waited = {row.id: _queued_key(row) for row in queued}  # computed once, compared often
    fifo = sorted(queued, key=lambda r: (-r.priority, waited[r.id], r.id))
    load = dict(gpus_held)
    ordered: list[TaskRow] = []
    for _priority, level in groupby(fifo, key=lambda r: r.priority):
        by_team: dict[str, deque[TaskRow]] = {}
        for row in level:
            by_team.setdefault(row.team, deque()).append(row)
        while by_team:
            team = min(
                by_team, key=lambda t: (load.get(t, 0), waited[by_team[t][0].id], by_team[t][0].id)
            )
            row = by_team[team].popleft()
            if not by_team[team]:
                del by_team[team]
            load[team] = load.get(team, 0) + gpus_of(row)
            ordered.append(row)
    return ordered


def _queued_key(row: TaskRow) -> float:
    return row.queued_at.timestamp() if row.queued_at is not None else 0.0
