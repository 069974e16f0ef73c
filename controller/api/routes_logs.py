"""Log routes: search across tasks, and the reconciliation of a task's log copies.

GET /v1/logs/search needs a search-index log reader (``log_reader = "opensearch://..."`` or
``"elasticsearch://..."``); the file reader keeps one file per attempt and cannot search
across them, so the route answers 409 then.

POST /v1/tasks/{id}/logs/reconcile compares the copies of the task's log (file record,
Kafka, index, archive; controller/logs/reconcile.py), with ``repair=true`` repairs them;
GET /v1/tasks/{id}/logs/reconciliation returns the stored result. Both are for an admin or
the task's team (a task of another team is "not found" to its caller).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from controller import backends
from controller.api import responses as out
from controller.api.contract import errors
from controller.auth.scope import Scope
from controller.core.service import ControllerService
from controller.domain.records import Task
from controller.errors import Conflict, InvalidInput
from controller.logs import log_view
from controller.logs.reconcile import LogReconciler
from controller.logs.reconcile_records import task_summary
from controller.logs.reconcile_worker import ReconcileWorker

Filter = Annotated[str | None, Query(max_length=256)]
Attempt = Annotated[int | None, Query(ge=1, description="the latest attempt when omitted")]
Streams = Annotated[
    list[Literal["stdout", "stderr", "system"]] | None,
    Query(description="only these streams (repeat the parameter)"),
]
Grep = Annotated[
    str | None, Query(max_length=1000, description="only lines whose message matches this regex")
]
Since = Annotated[
    datetime | None,
    Query(description="only lines at or after this time (ISO 8601; UTC when no offset)"),
]
Tail = Annotated[int | None, Query(ge=1, le=1_000_000, description="only the last N lines")]


def log_filter(
    stream: Sequence[str] | None, grep: str | None, since: datetime | None
) -> log_view.LogFilter:
    """The filter of a log request; a regex that does not compile is a 422 naming `grep`."""
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise InvalidInput(["query", "grep"], f"not a regular expression: {exc}") from exc
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return log_view.LogFilter(streams=frozenset(stream or ()), grep=pattern, since=since)


def log_checks(service: ControllerService) -> ReconcileWorker:
    """The background log check of SERVICE's store (started and stopped by the app)."""
    store = backends.artifact_store(service.settings)
    return ReconcileWorker(LogReconciler(service.settings, service.db, store))


def with_log_check(service: ControllerService, task: Task) -> Task:
    """TASK with the summary of its latest log reconciliation."""
    with service.db.read() as session:
        summary = task_summary(session, task.id)
    return task.model_copy(update={"log_reconciliation": summary}) if summary else task


def build_router(service: ControllerService, reconciler: LogReconciler | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["logs"])
    checks = reconciler or log_checks(service).reconciler

    @router.get("/logs/search", response_model=out.LogSearch, responses=errors(409))
    def search_logs(
        run_id: Filter = None,
        task_id: Filter = None,
        dag_id: Filter = None,
        text: Annotated[str | None, Query(max_length=1000)] = None,
        level: Literal["trace", "debug", "info", "warn", "error", "critical"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Lines matching every filter, newest first; `text` matches words of the message."""
        search = getattr(service.logs, "search", None)
        if search is None:
            raise Conflict(
                "log search needs a search-index log reader (TRACECTL_LOG_READER="
                "opensearch://host:port or elasticsearch://host:port)"
            )
        items = search(
            run_id=run_id,
            task_id=task_id,
            dag_id=dag_id,
            text=text,
            level=level,
            limit=limit,
            team=Scope.current().team,
        )
        return {"items": items, "count": len(items)}

    @router.get(
        "/tasks/{task_id}/logs/text",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(404)},
    )
    def log_text(
        task_id: str,
        attempt: Attempt = None,
        tail: Tail = None,
        stream: Streams = None,
        grep: Grep = None,
        since: Since = None,
    ) -> StreamingResponse:
        """The attempt's lines as text (`out|err|sys MESSAGE` a line), streamed as it is
        read; the filters hold together, and `tail` keeps the last N lines they let through."""
        filt = log_filter(stream, grep, since)
        task = service.get_task(task_id)  # 404 for a task the caller's team may not see
        where = (task.run_id, task.id, attempt)
        return StreamingResponse(
            log_view.stream(service.logs, where, filt, tail), media_type="text/plain; charset=utf-8"
        )

    @router.post(
        "/tasks/{task_id}/logs/reconcile", response_model=out.LogCheck, responses=errors(404, 409)
    )
    def reconcile_logs(
        task_id: str, attempt: Attempt = None, repair: bool = False
    ) -> dict[str, Any]:
        """Compare the copies of the attempt's log now (waiting a bounded time for the index
        to catch up); with repair=true re-ship missing lines and rewrite a damaged archive,
        then compare again."""
        task = service.get_task(task_id)  # 404 for a task the caller's team may not see
        if task.attempt < 1:
            raise Conflict(f"task {task_id} has not run yet: it has no log to reconcile")
        copies = checks.check(task_id, attempt, repair)
        return {
            "task_id": task_id,
            "attempt": copies[0]["attempt"] if copies else attempt,
            "copies": copies,
        }

    @router.get(
        "/tasks/{task_id}/logs/reconciliation",
        response_model=out.LogReconciliation,
        responses=errors(404),
    )
    def log_reconciliation(task_id: str, attempt: Attempt = None) -> dict[str, Any]:
        """The stored result of the last check of the attempt (empty when never checked)."""
        task = service.get_task(task_id)
        number = attempt or task.attempt
        with service.db.read() as session:
            summary = task_summary(session, task_id)
        return {
            "task_id": task_id,
            "attempt": number,
            "summary": summary,
            "copies": checks.results(task_id, number),
        }

    return router
