"""Tables of the lease system: inventory units, leases, and the fencing counter.

Two guarantees live in the database itself, so that no bug in the admitter and no race
between controllers can break them:

* the partial unique index ``uq_leases_one_exclusive`` lets a resource carry at most one
  active (``released_at IS NULL``) exclusive lease;
* the CHECK ``ck_resources_exclusive_alone`` on the holder counters of ``resources`` forbids
  an exclusive holder next to shared holders (a writer next to readers on an RWX volume).

SQLite (>= 3.8) and PostgreSQL both support partial indexes and CHECK constraints.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.schema import Base, UtcDateTime, utcnow

ACTIVE_EXCLUSIVE = text("released_at IS NULL AND is_exclusive")
ACTIVE = text("released_at IS NULL")
FENCING_COUNTER = "fencing"


class ResourceRow(Base):
    """One unit of the inventory: a GPU (`gpu:<pool>:<index>`), a volume
    (`volume:<claim>`) or a team quota (`quota:<team>`)."""

    __tablename__ = "resources"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # gpu | volume | quota
    pool: Mapped[str] = mapped_column(String(253))  # gpu pool, volume claim or team
    flavor: Mapped[str | None] = mapped_column(String(128))
    gpu_index: Mapped[int | None] = mapped_column(Integer)
    access: Mapped[str] = mapped_column(String(8))  # RWO | RWX | quota
    cpu_milli: Mapped[int | None] = mapped_column(BigInteger)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # False once the unit left the inventory file: it keeps its leases, gets no new ones
    in_inventory: Mapped[bool] = mapped_column(Boolean, default=True)
    exclusive_holder: Mapped[str | None] = mapped_column(String(40))
    shared_holders: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("shared_holders >= 0", name="ck_resources_shared_nonneg"),
        CheckConstraint(
            "exclusive_holder IS NULL OR shared_holders = 0", name="ck_resources_exclusive_alone"
        ),
    )


class LeaseRow(Base):
    """A grant of one resource to one task attempt; never deleted, only released."""

    __tablename__ = "leases"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(40), index=True)
    team: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    resource: Mapped[str] = mapped_column(ForeignKey("resources.name"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(4))  # rw | ro
    is_exclusive: Mapped[bool] = mapped_column(Boolean)
    cpu_milli: Mapped[int | None] = mapped_column(BigInteger)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    fencing_token: Mapped[int] = mapped_column(BigInteger, index=True)
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    release_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "uq_leases_one_exclusive",
            "resource",
            unique=True,
            sqlite_where=ACTIVE_EXCLUSIVE,
            postgresql_where=ACTIVE_EXCLUSIVE,
        ),
        Index("ix_leases_active_task", "task_id", sqlite_where=ACTIVE, postgresql_where=ACTIVE),
    )


class LeaseCounterRow(Base):
    """The fencing-token counter. Incrementing it is also the admission lock: the row
    stays locked until the admitting transaction commits."""

    __tablename__ = "lease_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
