"""/healthz and /readyz: liveness, and readiness (the store answers, the supervisor runs)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from controller import __version__
from controller.api import responses as out
from controller.core.service import ControllerService


def build_router(svc: ControllerService, run_supervisor: bool) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=out.Health)
    def healthz() -> out.Health:
        return out.Health(status="ok", version=__version__)

    @router.get(
        "/readyz",
        response_model=out.Readiness,
        responses={503: {"model": out.Readiness, "description": "not ready"}},
    )
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with svc.db.read() as session:
                session.execute(text("SELECT 1"))
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"error: {exc}"
        body: dict[str, object] = {"checks": checks}
        lead = svc.leadership
        if run_supervisor and lead is not None:
            running = lead.alive() and not (lead.leading and svc.supervisor.crashed())
            checks["supervisor"] = "ok" if running else "stopped"
            body["role"] = "leader" if lead.leading else "follower"
        elif run_supervisor:
            checks["supervisor"] = "stopped"  # not started yet
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **body}, status_code=200 if ready else 503)

    return router
