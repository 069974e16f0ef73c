"""The leader row: who leads the supervisor loops, until when, and the fencing epoch."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.schema import Base, UtcDateTime

SUPERVISOR = "supervisor"  # the one role elected today


class LeaderRow(Base):
    """One row per elected role. `epoch` grows by one at every take-over; a leader's writes
    require it unchanged (controller/core/fencing.py). `holder` and `expires_at` are the
    store's own lease; with a Kubernetes Lease they only say who took over last."""

    __tablename__ = "leader"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(253))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acquired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    renewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
