"""The writes of one admission round, batched: three statements, not three per task.

A round plans every task in memory first; the grants it decides are written at the end of
the round, in the round's transaction, each as one executemany of a statement built once:

* the compare-and-set on exclusive units: `UPDATE resources SET exclusive_holder = :holder
  WHERE name = :unit AND exclusive_holder IS NULL AND shared_holders = 0`, one parameter
  set per unit;
* the relative update of shared units: `shared_holders = shared_holders + :n WHERE name =
  :unit AND exclusive_holder IS NULL`;
* the lease rows: one multi-row INSERT, RETURNING their ids (matched back by task and
  unit, so the order the database returns them in does not matter).

Each CAS must hit every row it names (the summed row count of the executemany). A miss
raises LeaseRace, which aborts the whole
round's transaction, so a task still gets all its units or none (atomicity is the
transaction's, not the statement's), and the database's partial unique index and CHECK
remain the backstop exactly as with one statement per task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.orm import Session

from controller.store.lease_schema import LeaseRow, ResourceRow

_units = cast(Table, ResourceRow.__table__)
_leases = cast(Table, LeaseRow.__table__)
_unit = _units.c.name == bindparam("unit")
_free = _units.c.exclusive_holder.is_(None)
# Prepared once and run as executemany (one parameter set per unit): the statement text is
# the same every round, so SQLAlchemy's and the driver's caches keep it compiled/prepared.
_TAKE_EXCLUSIVE = (
    update(_units)
    .where(_unit, _free, _units.c.shared_holders == 0)
    .values(exclusive_holder=bindparam("holder"))
)
_ADD_SHARED = (
    update(_units)
    .where(_unit, _free)
    .values(shared_holders=_units.c.shared_holders + bindparam("n"))
)
_DROP_EXCLUSIVE = (
    update(_units)
    .where(_unit, _units.c.exclusive_holder == bindparam("holder"))
    .values(exclusive_holder=None)
)
_DROP_SHARED = (
    update(_units).where(_unit).values(shared_holders=_units.c.shared_holders - bindparam("n"))
)


class LeaseRace(RuntimeError):
    """A compare-and-set on a unit found it taken: the round's view was stale."""


@dataclass
class GrantBatch:
    exclusive: dict[str, str] = field(default_factory=dict)  # unit -> holder task
    shared: dict[str, int] = field(default_factory=dict)  # unit -> new shared holders
    leases: list[dict[str, Any]] = field(default_factory=list)

    def add_lease(self, task_id: str, unit: str, exclusive: bool, **values: Any) -> None:
        if exclusive:
            self.exclusive[unit] = task_id
        else:
            self.shared[unit] = self.shared.get(unit, 0) + 1
        self.leases.append(
            {
                "task_id": task_id,
                "resource": unit,
                "is_exclusive": exclusive,
                "cpu_milli": None,
                "memory_bytes": None,
                **values,
            }
        )

    def write(self, session: Session) -> None:
        """Apply the batch; fills in each lease's `id` (the INSERT's RETURNING)."""
        if not self.leases:
            return
        conn = session.connection()
        if self.exclusive:
            _cas(
                conn, _TAKE_EXCLUSIVE, [{"unit": u, "holder": t} for u, t in self.exclusive.items()]
            )
        if self.shared:
            _cas(conn, _ADD_SHARED, [{"unit": u, "n": n} for u, n in self.shared.items()])
        # one (task, unit) pair per lease in a round: the key to match RETURNING rows by,
        # whatever order the database returns them in
        # (an executemany: SQLAlchemy sends it as one multi-row INSERT, compiled once)
        returned = conn.execute(
            insert(_leases).returning(_leases.c.id, _leases.c.task_id, _leases.c.resource),
            self.leases,
        )
        ids = {(task_id, unit): lease_id for lease_id, task_id, unit in returned}
        for lease in self.leases:
            lease["id"] = ids[(lease["task_id"], lease["resource"])]


def give_back(session: Session, ended: Iterable[tuple[int, str, str, bool]]) -> None:
    """Return the units of ended leases `(id, task, unit, exclusive)`: two statements.

    Exclusive units are cleared only where the ending task still holds them; shared
    counters go down relatively, so both stay right beside a concurrent grant.
    """
    exclusive: list[tuple[str, str]] = []
    shared: dict[str, int] = {}
    for _id, task_id, unit, is_exclusive in ended:
        if is_exclusive:
            exclusive.append((unit, task_id))
        else:
            shared[unit] = shared.get(unit, 0) + 1
    conn = session.connection()
    if exclusive:
        conn.execute(_DROP_EXCLUSIVE, [{"unit": u, "holder": t} for u, t in exclusive])
    if shared:
        conn.execute(_DROP_SHARED, [{"unit": u, "n": n} for u, n in shared.items()])


def _cas(conn: Any, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Compare-and-set on units; a miss means the round's view was stale: the whole round
    aborts (under the round lock only a bug gets here). The row count of an executemany is
    the sum over its parameter sets on both drivers (`supports_sane_multi_rowcount`)."""
    if conn.execute(statement, rows).rowcount != len(rows):
        raise LeaseRace(f"units {[r['unit'] for r in rows]} were not all free")
