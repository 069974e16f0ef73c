"""Projects the append-only lineage_events log onto the indexed graph tables.

The graph is a view: `catch_up` reads every event past a stored cursor and turns it into
edges, idempotently (a replay inserts nothing twice), so a projection that dies halfway is
simply run again. Queries call it first, so the graph is never behind the log it derives from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from controller.domain import events
from controller.domain.events import EventType
from controller.lineage import nodes
from controller.lineage.cache import cache_key
from controller.store.database import Database
from controller.store.lineage_schema import LineageCacheRow, LineageEdgeRow
from controller.store.schema import ControllerStateRow, LineageEventRow, TaskRow, utcnow

CURSOR_KEY = "lineage_graph.cursor"
BATCH = 5000


class Event(Protocol):
    """The columns of a lineage_events row the projection reads."""

    @property
    def id(self) -> int: ...
    @property
    def run_id(self) -> str: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def type(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...


_COLUMNS = tuple(
    LineageEventRow.__table__.c[name]
    for name in ("id", "run_id", "task_id", "type", "payload", "created_at")
)


def _edge(src: str, dst: str, kind: str, event: Event, path: str = "") -> dict[str, Any]:
    return {
        "src": src,
        "dst": dst,
        "kind": kind,
        "path": path,
        "run_id": event.run_id,
        "task_id": event.task_id or "",
        "event_id": event.id,
    }


def edges_of(event: Event) -> list[dict[str, Any]]:
    """The graph edges one event asserts (none for events that change no edge)."""
    if event.task_id is None:
        return []
    task = nodes.task(event.task_id)
    typed = events.parse(event.type, event.payload) if event.type in events.MODELS else None
    match typed:
        case events.TaskSubmitted():
            return _submitted_edges(typed, task, event)
        case events.InputUsed():
            return [_edge(nodes.artifact(typed.sha256), task, "used", event, typed.path)]
        case events.OutputProduced():
            return [_edge(task, nodes.artifact(typed.sha256), "generated", event, typed.path)]
        case events.ModelRegistered():
            return [
                _edge(
                    task,
                    nodes.model(typed.name, typed.version),
                    "registered",
                    event,
                    typed.source or "",
                )
            ]
        case events.TaskCached():
            return [_edge(nodes.task(typed.cached_from_task), task, "cached", event)]
    return []


def _submitted_edges(
    submitted: events.TaskSubmitted, task: str, event: Event
) -> list[dict[str, Any]]:
    resolved, spec = submitted.resolved, submitted.spec
    edges = []
    if resolved.get("commit"):
        edges.append(_edge(nodes.commit(resolved["commit"]), task, "code", event))
    for data in resolved.get("data") or []:
        edges.append(
            _edge(nodes.data(data["path"], data["md5"]), task, "used", event, data["path"])
        )
    environment = resolved.get("environment") or {}
    if environment.get("key"):
        edges.append(
            _edge(
                nodes.env(environment["key"]),
                task,
                "ran_in",
                event,
                environment.get("path") or environment.get("kind") or "",
            )
        )
    # A declared model version is read by the task, like an input artifact.
    for uri in spec.get("models") or []:
        edges.append(_edge(nodes.model_of_uri(uri), task, "used", event, uri))
    if spec.get("mode") == "service":
        edges.append(_edge(task, nodes.service(event.task_id or ""), "serves", event))
    return edges


def _insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:
        session.execute(sqlite.insert(table).prefix_with("OR IGNORE"), rows)


def _cache_rows(session: Session, batch: Sequence[Event]) -> list[dict[str, Any]]:
    """Cache index entries of the tasks that succeeded in BATCH, from their earlier events."""
    done = {
        e.task_id: e
        for e in batch
        if e.task_id is not None
        and e.type == EventType.TASK_COMPLETED
        and (e.payload or {}).get("status") == "succeeded"
    }
    if not done:
        return []
    wanted = (EventType.TASK_SUBMITTED, EventType.INPUT_USED, EventType.TASK_ADMITTED)
    history: dict[str, list[Event]] = {}
    for event in batch:
        if event.task_id in done and event.type in wanted:
            history.setdefault(event.task_id, []).append(event)
    # A task submitted before this batch began needs its earlier events from the log.
    missing = [
        t for t in done if not any(e.type == EventType.TASK_SUBMITTED for e in history.get(t, []))
    ]
    if missing:
        for task_id in missing:
            history.pop(task_id, None)
        for event in session.execute(
            select(*_COLUMNS)
            .where(LineageEventRow.task_id.in_(missing), LineageEventRow.type.in_(wanted))
            .order_by(LineageEventRow.id)
        ):
            history.setdefault(event.task_id or "", []).append(event)
    # The submitted event leaves env out; the key covers the public env the task row keeps.
    envs: dict[str, dict[str, Any]] = {
        row.id: (row.spec or {}).get("env", {})
        for row in session.execute(
            select(TaskRow.id, TaskRow.spec).where(TaskRow.id.in_(list(done)))
        )
    }
    rows = []
    for task_id, end in done.items():
        events = [e for e in history.get(task_id or "", []) if e.id < end.id]
        submitted = next((e.payload for e in events if e.type == EventType.TASK_SUBMITTED), None)
        if submitted is None:
            continue
        # Only the inputs of the last attempt: earlier attempts logged theirs too.
        admitted = [e.id for e in events if e.type == EventType.TASK_ADMITTED]
        last = admitted[-1] if admitted else 0
        inputs = [
            (e.payload["path"], e.payload["sha256"])
            for e in events
            if e.type == EventType.INPUT_USED and e.id > last
        ]
        spec = {**(submitted.get("spec") or {}), "env": envs.get(task_id or "", {})}
        key = cache_key(spec, submitted.get("resolved") or {}, inputs)
        rows.append(
            {
                "task_id": task_id,
                "run_id": end.run_id,
                "cache_key": key,
                "created_at": end.created_at,
            }
        )
    return rows


def apply(session: Session, events: Sequence[Event]) -> int:
    """Write the edges and cache entries of EVENTS; returns the last event id seen."""
    edges = [edge for event in events for edge in edges_of(event)]
    _insert_ignore(session, LineageEdgeRow.__table__, edges)
    _insert_ignore(session, LineageCacheRow.__table__, _cache_rows(session, events))
    return events[-1].id if events else 0


def _cursor(session: Session) -> int:
    state = session.get(ControllerStateRow, CURSOR_KEY)
    return int(state.value.get("event_id", 0)) if state else 0


def catch_up(db: Database, batch: int = BATCH) -> int:
    """Project every event not yet projected; returns how many were read."""
    with db.read() as session:
        newest = session.scalar(select(func.max(LineageEventRow.id))) or 0
        if newest <= _cursor(session):
            return 0
    seen = 0
    while True:
        with db.write() as session:
            # The row lock (PostgreSQL) or the write lock (SQLite) keeps two controllers
            # from projecting the same batch at once.
            state = session.scalar(
                select(ControllerStateRow)
                .where(ControllerStateRow.key == CURSOR_KEY)
                .with_for_update()
            )
            cursor = int(state.value.get("event_id", 0)) if state else 0
            events: list[Event] = list(
                session.execute(
                    select(*_COLUMNS)
                    .where(LineageEventRow.id > cursor)
                    .order_by(LineageEventRow.id)
                    .limit(batch)
                )
            )
            if not events:
                return seen
            last = apply(session, events)
            seen += len(events)
            if state is None:
                session.add(
                    ControllerStateRow(
                        key=CURSOR_KEY, value={"event_id": last}, updated_at=utcnow()
                    )
                )
            else:
                state.value = {"event_id": last}
                state.updated_at = utcnow()
        if len(events) < batch:
            return seen
