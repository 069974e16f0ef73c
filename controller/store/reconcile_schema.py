"""Log reconciliation results: one row per task attempt and per copy of its log.

The copies are the sink's file record, Kafka, the search index and the archive
(controller/logs/reconcile.py compares them). A row starts ``pending`` when the attempt's
log is archived; the background check finds pending rows here, so a restart loses none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.schema import Base, UtcDateTime


class LogReconciliationRow(Base):
    __tablename__ = "log_reconciliation"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    copy: Mapped[str] = mapped_column(String(16))  # record | kafka | index | archive
    # pending | ok | missing | extra | corrupt | n/a | error
    status: Mapped[str] = mapped_column(String(16), index=True)
    lines: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(64))
    missing: Mapped[int] = mapped_column(BigInteger, default=0)
    extra: Mapped[int] = mapped_column(BigInteger, default=0)
    # Checks that found this copy wrong, over time: the source of the mismatch counter.
    mismatches: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    repaired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("task_id", "attempt", "copy", name="uq_log_reconciliation_copy"),
    )
