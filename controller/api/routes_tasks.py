"""/v1/tasks and /v1/artifacts: list, show, wait for and cancel tasks; their lineage,
artifacts and logs (a page, the tail, or followed as NDJSON)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from controller.api import responses as out
from controller.api import routes_logs
from controller.api.contract import errors
from controller.api.params import Cursor, Limit
from controller.core.service import ControllerService
from controller.domain.records import Artifact, Task, TaskStatus
from controller.logs import log_view
from controller.ports import LogLine

NDJSON = "application/x-ndjson"


def build_router(svc: ControllerService) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    @v1.get("/tasks", response_model=out.TaskPage, tags=["tasks"])
    def list_tasks(
        limit: Limit = 50,
        cursor: Cursor = None,
        run_id: str | None = None,
        status: TaskStatus | None = None,
        order: Literal["oldest", "newest"] = "oldest",
    ) -> dict[str, Any]:
        """Tasks in submission order, or with order=newest the latest first."""
        return svc.list_tasks(limit, cursor, run_id, status, newest_first=order == "newest")

    @v1.get("/tasks/{task_id}", response_model=Task, tags=["tasks"], responses=errors(404))
    def get_task(task_id: str) -> Task:
        return routes_logs.with_log_check(svc, svc.get_task(task_id))

    @v1.get("/tasks/{task_id}/wait", response_model=Task, tags=["tasks"], responses=errors(404))
    async def wait_task(
        task_id: str, timeout_s: Annotated[float, Query(ge=0, le=300)] = 30.0
    ) -> Task:
        """Long poll: returns when the task ends or after timeout_s, whichever is first
        (async: a waiter holds no thread)."""
        return await svc.await_task(task_id, timeout_s)

    @v1.post(
        "/tasks/{task_id}/cancel", response_model=Task, tags=["tasks"], responses=errors(404, 409)
    )
    def cancel_task(task_id: str) -> Task:
        return svc.cancel_task(task_id)

    @v1.get(
        "/tasks/{task_id}/lineage",
        response_model=out.TaskLineage,
        tags=["lineage"],
        responses=errors(404),
    )
    def task_lineage(task_id: str) -> dict[str, Any]:
        return svc.task_lineage(task_id)

    @v1.get(
        "/tasks/{task_id}/artifacts",
        response_model=list[Artifact],
        tags=["artifacts"],
        responses=errors(404),
    )
    def task_artifacts(task_id: str) -> list[Artifact]:
        svc.get_task(task_id)
        return svc.artifacts(task_id=task_id)

    @v1.get(
        "/tasks/{task_id}/logs",
        tags=["logs"],
        response_model=out.LogPage,
        responses={
            200: {
                "content": {NDJSON: {"schema": {"type": "string"}}},
                "description": "with follow=true: one JSON line per log line, "
                'then {"end": true, "status": …}',
            },
            **errors(404),
        },
    )
    def task_logs(
        task_id: str,
        request: Request,
        attempt: Annotated[int | None, Query(ge=1)] = None,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        limit: Limit = 500,
        follow: bool = False,
        tail: routes_logs.Tail = None,
    ) -> dict[str, Any] | StreamingResponse:
        """A page of log lines, or with follow=true an NDJSON stream until the task ends;
        tail=N: a page of the last N lines (follow on from its next_after_seq)."""
        if tail is not None:
            task = svc.get_task(task_id)
            last = log_view.tail(
                svc.logs, (task.run_id, task.id, attempt), tail, log_view.LogFilter()
            )
            return {
                "items": [_line(x) for x in last],
                "tail": True,
                "next_after_seq": last[-1].seq if last else after_seq,
            }
        if not follow:
            lines = svc.task_logs(task_id, attempt, after_seq, limit)
            return {
                "items": [_line(x) for x in lines],
                "next_after_seq": lines[-1].seq if lines else after_seq,
            }
        svc.get_task(task_id)
        return StreamingResponse(_follow(svc, task_id, attempt, after_seq), media_type=NDJSON)

    @v1.get(
        "/artifacts/{sha256}",
        response_model=list[Artifact],
        tags=["artifacts"],
        responses=errors(404),
    )
    def artifact(sha256: str) -> list[Artifact]:
        from controller.errors import NotFound

        found = svc.artifacts(sha256=sha256.removeprefix("sha256:"))
        if not found:
            raise NotFound(f"no artifact has sha256 {sha256}")
        return found

    return v1


def _line(line: LogLine) -> dict[str, Any]:
    return {
        "seq": line.seq,
        "attempt": line.attempt,
        "stream": line.stream,
        "timestamp": line.timestamp.isoformat(),
        "message": line.message,
    }


def _follow(
    svc: ControllerService, task_id: str, attempt: int | None, after_seq: int
) -> Iterator[str]:
    while True:
        task = svc.get_task(task_id)
        number = attempt or max(task.attempt, 1)
        lines = svc.task_logs(task_id, number, after_seq, 1000)
        for line in lines:
            yield json.dumps(_line(line)) + "\n"
        if lines:
            after_seq = lines[-1].seq
            continue
        if task.status.terminal:
            yield json.dumps({"end": True, "status": task.status.value}) + "\n"
            return
        time.sleep(0.2)
