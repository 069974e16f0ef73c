"""The leader lease in the store: the `leader` row's holder and expiry, by conditional UPDATEs.

Each step is one `UPDATE leader ... WHERE` naming what must still hold (free or expired to
acquire, ours to renew or release), and its row count says whether it held: a
compare-and-set on PostgreSQL (the row lock) as on SQLite (one writer).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, update

from controller.config import Settings
from controller.store.database import Database
from controller.store.leader_schema import SUPERVISOR, LeaderRow
from controller.store.schema import utcnow


class StoreElection:
    def __init__(self, settings: Settings, db: Database, holder: str) -> None:
        self.db, self.holder = db, holder
        self.ttl = timedelta(seconds=settings.leader_lease_s)

    def acquire(self) -> bool:
        now = utcnow()
        free = or_(
            LeaderRow.holder.is_(None),
            LeaderRow.expires_at.is_(None),
            LeaderRow.expires_at < now,
            LeaderRow.holder == self.holder,
        )
        return self._update(free, holder=self.holder, expires_at=now + self.ttl, renewed_at=now)

    def renew(self) -> bool:
        now = utcnow()
        mine = LeaderRow.holder == self.holder
        return self._update(mine, expires_at=now + self.ttl, renewed_at=now)

    def release(self) -> None:
        self._update(LeaderRow.holder == self.holder, expires_at=None)  # the holder stays on record

    def _update(self, condition: ColumnElement[bool], **values: Any) -> bool:
        with self.db.write() as session:
            result = session.execute(
                update(LeaderRow)
                .where(LeaderRow.name == SUPERVISOR, condition)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return getattr(result, "rowcount", 0) == 1
