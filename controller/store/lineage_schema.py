"""Lineage graph tables: a projection of the append-only lineage_events log.

Nothing writes these but controller/lineage/projection.py; dropping them and replaying the
log rebuilds them, so they carry no fact of their own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.schema import Base, UtcDateTime, utcnow


class LineageEdgeRow(Base):
    """One edge `src -> dst` of the lineage graph; node ids read `kind:identity`."""

    __tablename__ = "lineage_edges"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    src: Mapped[str] = mapped_column(String(600))
    dst: Mapped[str] = mapped_column(String(600))
    kind: Mapped[str] = mapped_column(String(32))
    # "" rather than NULL so the unique constraint also dedupes edges without a path.
    path: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[str] = mapped_column(String(40))
    task_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("src", "dst", "kind", "path", name="uq_lineage_edges"),
        Index("ix_lineage_edges_dst", "dst", "src"),
        Index("ix_lineage_edges_run", "run_id"),
    )


class LineageCacheRow(Base):
    """Content-hash key of a succeeded task: the index the output cache looks up."""

    __tablename__ = "lineage_cache"

    task_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40))
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
