"""/v1/runs: create, list, show, cancel and close runs; submit tasks; a run's lineage,
passport and artifacts; preflight a task spec."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from controller.api import responses as out
from controller.api.contract import errors
from controller.api.params import Cursor, IdemKey, Limit
from controller.core.service import ControllerService
from controller.domain.records import Artifact, Run, Task
from controller.domain.requests import RunCreate, TaskCreate


def build_router(svc: ControllerService) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    @v1.post(
        "/runs",
        response_model=Run,
        status_code=201,
        tags=["runs"],
        responses={
            200: {"model": Run, "description": "the run this Idempotency-Key created before"},
            **errors(409),
        },
    )
    def create_run(body: RunCreate, response: Response, idempotency_key: IdemKey = None) -> Run:
        if idempotency_key:
            body = body.model_copy(update={"idempotency_key": idempotency_key})
        run, created = svc.create_run(body)
        if not created:
            response.status_code = 200
        return run

    @v1.get("/runs", response_model=out.RunPage, tags=["runs"])
    def list_runs(
        limit: Limit = 50,
        cursor: Cursor = None,
        pipeline: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        return svc.list_runs(limit, cursor, pipeline, status)

    @v1.get("/runs/{run_id}", response_model=Run, tags=["runs"], responses=errors(404))
    def get_run(run_id: str) -> Run:
        return svc.get_run(run_id)

    @v1.post("/runs/{run_id}/cancel", response_model=Run, tags=["runs"], responses=errors(404))
    def cancel_run(run_id: str) -> Run:
        return svc.cancel_run(run_id)

    @v1.post("/runs/{run_id}/close", response_model=Run, tags=["runs"], responses=errors(404))
    def close_run(run_id: str) -> Run:
        """Close the run: it refuses new tasks (409), and its long-running services are
        stopped (recorded as succeeded, "stopped: run ended") once its other tasks end."""
        return svc.close_run(run_id)

    @v1.post(
        "/runs/{run_id}/tasks",
        response_model=Task,
        status_code=201,
        tags=["tasks"],
        responses={
            200: {"model": Task, "description": "the task this Idempotency-Key submitted before"},
            **errors(404, 409),
        },
    )
    def submit_task(
        run_id: str, body: TaskCreate, response: Response, idempotency_key: IdemKey = None
    ) -> Task:
        if idempotency_key:
            body = body.model_copy(update={"idempotency_key": idempotency_key})
        task, created = svc.submit_task(run_id, body)
        if not created:
            response.status_code = 200
        return task

    @v1.get(
        "/runs/{run_id}/lineage",
        response_model=out.RunLineage,
        tags=["lineage"],
        responses=errors(404),
    )
    def run_lineage(run_id: str) -> dict[str, Any]:
        return svc.run_lineage(run_id)

    @v1.get(
        "/runs/{run_id}/lineage/events",
        response_model=out.LineageEventPage,
        tags=["lineage"],
        responses=errors(404),
    )
    def run_lineage_events(
        run_id: str, after_id: Annotated[int, Query(ge=0)] = 0, limit: Limit = 500
    ) -> dict[str, Any]:
        svc.get_run(run_id)
        events = svc.lineage_events(run_id, after_id, limit)
        return {"items": events, "next_after_id": events[-1]["id"] if events else after_id}

    @v1.post("/preflight", response_model=out.Preflight, tags=["tasks"])
    def preflight(body: TaskCreate) -> dict[str, Any]:
        """Check a task spec as submission would, and return every finding; writes nothing."""
        findings = svc.submission.preflight(body.spec)
        return {
            "name": body.name,
            "findings": [f.as_dict() for f in findings],
            "refused": any(f.action == "refuse" for f in findings),
        }

    @v1.get(
        "/runs/{run_id}/passport",
        response_model=out.Passport,
        tags=["lineage"],
        response_model_exclude_unset=True,
        responses=errors(404),
    )
    def run_passport(run_id: str) -> dict[str, Any]:
        """Every identity the run touched, sealed with a content hash (see docs)."""
        return svc.passport(run_id)

    @v1.get(
        "/runs/{run_id}/artifacts",
        response_model=list[Artifact],
        tags=["artifacts"],
        responses=errors(404),
    )
    def run_artifacts(run_id: str) -> list[Artifact]:
        svc.get_run(run_id)
        return svc.artifacts(run_id=run_id)

    return v1
