"""Tables. Changes go through an Alembic migration in store/migrations/versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from controller.domain.events import LineageEvent
from controller.domain.refs import ExecutorRef, dump_ref, parse_ref


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RefColumn(TypeDecorator[ExecutorRef]):
    """An executor reference as JSON; rows written before references had a model read back
    as one too (controller/domain/refs.py)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: ExecutorRef | None, dialect: Dialect) -> Any:
        return dump_ref(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> ExecutorRef | None:
        return parse_ref(value)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(256), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    team: Mapped[str] = mapped_column(String(128), default="default", index=True)
    airflow_dag_id: Mapped[str | None] = mapped_column(String(256), index=True)
    airflow_run_id: Mapped[str | None] = mapped_column(String(256))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reproduces: Mapped[str | None] = mapped_column(String(40), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(256), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_runs_created", "created_at", "id"),
        # the console's filtered runs list, newest first (migration 0016)
        Index("ix_runs_status_created", "status", "created_at", "id"),
        Index("ix_runs_pipeline_created", "pipeline", "created_at", "id", "status"),
        Index("ix_runs_team_created", "team", "created_at", "id", "status"),
        Index("ix_runs_dag_created", "airflow_dag_id", "created_at", "id", "status"),
    )


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    team: Mapped[str] = mapped_column(String(128), default="default")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime())
    deadline: Mapped[datetime | None] = mapped_column(UtcDateTime())
    executor: Mapped[str | None] = mapped_column(String(64))
    executor_ref: Mapped[ExecutorRef | None] = mapped_column(RefColumn())
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(256), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("run_id", "name", name="uq_tasks_run_name"),
        Index("ix_tasks_created", "created_at", "id"),
    )


class AttemptRow(Base):
    """One attempt of a task: its admission written once when admitted (like Kueue's
    status.admission), its outcome once when it ends."""

    __tablename__ = "attempts"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    executor: Mapped[str | None] = mapped_column(String(64))
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # from the leases
    leases: Mapped[list[Any]] = mapped_column(JSON, default=list)
    admitted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    status: Mapped[str | None] = mapped_column(String(16))  # once ended
    reason: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class TaskSecretRow(Base):
    """Secret env values, kept apart from the spec so no API or lineage path can show them.

    Deleted when the task ends.
    """

    __tablename__ = "task_secrets"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    env: Mapped[dict[str, Any]] = mapped_column(JSON)


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uri: Mapped[str] = mapped_column(Text, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class TaskInputRow(Base):
    """An artifact a task consumed: the edge artifact -> task of the lineage graph."""

    __tablename__ = "task_inputs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uri: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    produced_by_task: Mapped[str | None] = mapped_column(String(40))


class LineageEventRow(Base):
    """Append-only lineage event log; lineage views are derived from it."""

    __tablename__ = "lineage_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    task_id: Mapped[str | None] = mapped_column(String(40), index=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, index=True, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))

    @classmethod
    def of(cls, event: LineageEvent, run_id: str, task_id: str | None = None) -> LineageEventRow:
        """The log row of a typed event (controller/domain/events.py)."""
        return cls(run_id=run_id, task_id=task_id, type=event.type.value, payload=event.payload())


class LineageRecordRow(Base):
    """Derived view: the full lineage record of a task's latest attempt."""

    __tablename__ = "lineage_records"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, index=True, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class ControllerStateRow(Base):
    """Small key/value facts about the controller itself (e.g. the last start)."""

    __tablename__ = "controller_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# Registers the lease tables on Base.metadata (Alembic and create_all see them).
from controller.store import auth_schema as _auth_schema  # noqa: E402, F401
from controller.store import chain_schema as _chain_schema  # noqa: E402, F401
from controller.store import leader_schema as _leader_schema  # noqa: E402, F401
from controller.store import lease_schema as _lease_schema  # noqa: E402, F401
from controller.store import lineage_schema as _lineage_schema  # noqa: E402, F401
from controller.store import reconcile_schema as _reconcile_schema  # noqa: E402, F401
