"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import text

from controller import __version__
from controller.api import (
    problems,
    routes_leases,
    routes_lineage,
    routes_logs,
    routes_metrics,
    routes_shares,
)
from controller.api.scoping import check_routes, scoped
from controller.api.security import Authenticator, SecurityMiddleware
from controller.config import Settings
from controller.core.service import ControllerService
from controller.domain.records import Artifact, Run, Task
from controller.domain.requests import RunCreate, TaskCreate
from controller.logs import log_view
from controller.ports import LogLine

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of a page")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]


def _line(line: LogLine) -> dict[str, Any]:
    return {"seq": line.seq, "attempt": line.attempt, "stream": line.stream,
            "timestamp": line.timestamp.isoformat(), "message": line.message}


def create_app(settings: Settings | None = None, service: ControllerService | None = None,
               run_supervisor: bool = True) -> FastAPI:
    settings = settings or Settings.from_env()
    svc = service or ControllerService(settings)
    log_checks = routes_logs.log_checks(svc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        svc.db.migrate()
        svc.sync_inventory()  # GET /v1/resources shows the inventory before any task
        if run_supervisor:
            svc.supervisor.start()
            log_checks.start()  # log reconciliation after each attempt, in the background
        yield
        if run_supervisor:
            log_checks.stop()
            svc.supervisor.stop()

    app = FastAPI(
        title="tracectl ML Service Controller",
        version=__version__,
        description="Runs ML workflow tasks with locked GPU/volume leases, shipped logs and "
        "end-to-end lineage. Errors are RFC 7807 problem+json documents.",
        lifespan=lifespan,
        dependencies=[Depends(scoped)],  # the caller's team, for every route (api/scoping.py)
    )
    app.state.service = svc
    problems.install(app)
    app.add_middleware(SecurityMiddleware, authenticator=Authenticator(settings, svc.db),
                       db=svc.db)
    v1 = APIRouter(prefix="/v1")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with svc.db.read() as session:
                session.execute(text("SELECT 1"))
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"error: {exc}"
        if run_supervisor:
            checks["supervisor"] = "ok" if svc.supervisor.alive() else "stopped"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    # -- runs ---------------------------------------------------------------------------
    @v1.post("/runs", response_model=Run, status_code=201, tags=["runs"])
    def create_run(body: RunCreate, response: Response, idempotency_key: IdemKey = None) -> Run:
        if idempotency_key:
            body = body.model_copy(update={"idempotency_key": idempotency_key})
        run, created = svc.create_run(body)
        if not created:
            response.status_code = 200
        return run

    @v1.get("/runs", tags=["runs"])
    def list_runs(limit: Limit = 50, cursor: Cursor = None, pipeline: str | None = None,
                  status: str | None = None) -> dict[str, Any]:
        return svc.list_runs(limit, cursor, pipeline, status)

    @v1.get("/runs/{run_id}", response_model=Run, tags=["runs"])
    def get_run(run_id: str) -> Run:
        return svc.get_run(run_id)

    @v1.post("/runs/{run_id}/cancel", response_model=Run, tags=["runs"])
    def cancel_run(run_id: str) -> Run:
        return svc.cancel_run(run_id)

    @v1.post("/runs/{run_id}/close", response_model=Run, tags=["runs"])
    def close_run(run_id: str) -> Run:
        """Close the run: it refuses new tasks (409), and its long-running services are
        stopped (recorded as succeeded, "stopped: run ended") once its other tasks end."""
        return svc.close_run(run_id)

    @v1.post("/runs/{run_id}/tasks", response_model=Task, status_code=201, tags=["tasks"])
    def submit_task(run_id: str, body: TaskCreate, response: Response,
                    idempotency_key: IdemKey = None) -> Task:
        if idempotency_key:
            body = body.model_copy(update={"idempotency_key": idempotency_key})
        task, created = svc.submit_task(run_id, body)
        if not created:
            response.status_code = 200
        return task

    @v1.get("/runs/{run_id}/lineage", tags=["lineage"])
    def run_lineage(run_id: str) -> dict[str, Any]:
        return svc.run_lineage(run_id)

    @v1.get("/runs/{run_id}/lineage/events", tags=["lineage"])
    def run_lineage_events(run_id: str, after_id: Annotated[int, Query(ge=0)] = 0,
                           limit: Limit = 500) -> dict[str, Any]:
        svc.get_run(run_id)
        events = svc.lineage_events(run_id, after_id, limit)
        return {"items": events, "next_after_id": events[-1]["id"] if events else after_id}

    @v1.post("/preflight", tags=["tasks"])
    def preflight(body: TaskCreate) -> dict[str, Any]:
        """Check a task spec as submission would, and return every finding; writes nothing."""
        findings = svc.submission.preflight(body.spec)
        return {"name": body.name, "findings": [f.as_dict() for f in findings],
                "refused": any(f.action == "refuse" for f in findings)}

    @v1.get("/runs/{run_id}/passport", tags=["lineage"])
    def run_passport(run_id: str) -> dict[str, Any]:
        """Every identity the run touched, sealed with a content hash (see docs)."""
        return svc.passport(run_id)

    @v1.get("/runs/{run_id}/artifacts", response_model=list[Artifact], tags=["artifacts"])
    def run_artifacts(run_id: str) -> list[Artifact]:
        svc.get_run(run_id)
        return svc.artifacts(run_id=run_id)

    # -- tasks --------------------------------------------------------------------------
    @v1.get("/tasks", tags=["tasks"])
    def list_tasks(limit: Limit = 50, cursor: Cursor = None, run_id: str | None = None,
                   status: str | None = None,
                   order: Literal["oldest", "newest"] = "oldest") -> dict[str, Any]:
        """Tasks in submission order, or with order=newest the latest first."""
        return svc.list_tasks(limit, cursor, run_id, status, newest_first=order == "newest")

    @v1.get("/tasks/{task_id}", response_model=Task, tags=["tasks"])
    def get_task(task_id: str) -> Task:
        return routes_logs.with_log_check(svc, svc.get_task(task_id))

    @v1.get("/tasks/{task_id}/wait", response_model=Task, tags=["tasks"])
    def wait_task(task_id: str,
                  timeout_s: Annotated[float, Query(ge=0, le=300)] = 30.0) -> Task:
        """Long poll: returns when the task ends or after timeout_s, whichever is first."""
        return svc.wait_task(task_id, timeout_s)

    @v1.post("/tasks/{task_id}/cancel", response_model=Task, tags=["tasks"])
    def cancel_task(task_id: str) -> Task:
        return svc.cancel_task(task_id)

    @v1.get("/tasks/{task_id}/lineage", tags=["lineage"])
    def task_lineage(task_id: str) -> dict[str, Any]:
        return svc.task_lineage(task_id)

    @v1.get("/tasks/{task_id}/artifacts", response_model=list[Artifact], tags=["artifacts"])
    def task_artifacts(task_id: str) -> list[Artifact]:
        svc.get_task(task_id)
        return svc.artifacts(task_id=task_id)

    @v1.get("/tasks/{task_id}/logs", tags=["logs"], response_model=None)
    def task_logs(
        task_id: str, request: Request,
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
            last = log_view.tail(svc.logs, (task.run_id, task.id, attempt), tail,
                                 log_view.LogFilter())
            return {"items": [_line(x) for x in last], "tail": True,
                    "next_after_seq": last[-1].seq if last else after_seq}
        if not follow:
            lines = svc.task_logs(task_id, attempt, after_seq, limit)
            return {"items": [_line(x) for x in lines],
                    "next_after_seq": lines[-1].seq if lines else after_seq}
        svc.get_task(task_id)
        return StreamingResponse(_follow(svc, task_id, attempt, after_seq),
                                 media_type="application/x-ndjson")

    @v1.get("/artifacts/{sha256}", response_model=list[Artifact], tags=["artifacts"])
    def artifact(sha256: str) -> list[Artifact]:
        from controller.errors import NotFound

        found = svc.artifacts(sha256=sha256.removeprefix("sha256:"))
        if not found:
            raise NotFound(f"no artifact has sha256 {sha256}")
        return found

    app.include_router(v1)
    # extra routers (one line each)
    app.include_router(routes_leases.build_router(svc))
    app.include_router(routes_lineage.build_router(svc))
    app.include_router(routes_logs.build_router(svc, log_checks.reconciler))
    app.include_router(routes_metrics.build_router(svc))
    app.include_router(routes_shares.build_router(svc))
    check_routes(app)
    return app


def _follow(svc: ControllerService, task_id: str, attempt: int | None,
            after_seq: int) -> Iterator[str]:
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
