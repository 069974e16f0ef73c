"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from controller import __version__, backends
from controller.api import (
    contract,
    problems,
    routes_health,
    routes_leases,
    routes_lineage,
    routes_logs,
    routes_metrics,
    routes_runs,
    routes_shares,
    routes_tasks,
)
from controller.api.scoping import check_routes, scoped
from controller.api.security import Authenticator, SecurityMiddleware
from controller.config import Settings
from controller.console import apidocs
from controller.console import routes as console_routes
from controller.core.leadership import Leadership, Role
from controller.core.service import ControllerService
from controller.lineage.emission import Emission, cursor_file
from controller.logs.reconcile_worker import ReconcileWorker


def _emission(settings: Settings, svc: ControllerService) -> Emission | None:
    sink_of = backends.openlineage_sink_of(settings)
    return None if sink_of is None else Emission(svc.db, sink_of, cursor_file(settings.home))


def _leadership(
    settings: Settings,
    svc: ControllerService,
    log_checks: ReconcileWorker,
    emission: Emission | None,
) -> Leadership:
    """The lease campaign, and what the leader runs: the supervisor loops, log reconciliation
    after each attempt, OpenLineage events to TRACECTL_OPENLINEAGE_URL / _KAFKA_TOPIC."""
    holder = f"{settings.replica}:{os.getpid()}:{secrets.token_hex(3)}"
    roles: list[Role] = [svc.supervisor, log_checks]  # each writes under the term's fence
    if emission is not None:
        roles.append(emission)
    election = backends.leader_election(settings, svc.db, holder)
    return Leadership(election, svc.db, holder, roles, settings.leader_lease_s)


def create_app(
    settings: Settings | None = None,
    service: ControllerService | None = None,
    run_supervisor: bool = True,
) -> FastAPI:
    settings = settings or Settings.from_env()
    svc = service or ControllerService(settings)
    log_checks = routes_logs.log_checks(svc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        svc.db.migrate()
        svc.sync_inventory()  # GET /v1/resources shows the inventory before any task
        emission = _emission(settings, svc) if run_supervisor else None
        if run_supervisor:
            svc.leadership = _leadership(settings, svc, log_checks, emission)
            svc.leadership.start()  # this replica runs the loops while it holds the lease
        yield
        if svc.leadership is not None:
            svc.leadership.stop()
            svc.supervisor.stop()
        if emission is not None:
            emission.stop()

    app = FastAPI(
        title="tracectl ML Service Controller",
        version=__version__,
        description="Runs ML workflow tasks with locked GPU/volume leases, shipped logs and "
        "end-to-end lineage. Errors are RFC 7807 problem+json documents.",
        lifespan=lifespan,
        dependencies=[Depends(scoped)],  # the caller's team, for every route (api/scoping.py)
        docs_url=None,  # served offline by apidocs.install
        redoc_url=None,
    )
    app.state.service = svc
    problems.install(app)
    contract.install(app)
    authenticator = Authenticator(settings, svc.db)
    app.add_middleware(SecurityMiddleware, authenticator=authenticator, db=svc.db)
    apidocs.install(app)
    app.include_router(routes_health.build_router(svc, run_supervisor))
    app.include_router(routes_runs.build_router(svc))
    app.include_router(routes_tasks.build_router(svc))
    # extra routers (one line each)
    app.include_router(routes_leases.build_router(svc))
    app.include_router(routes_lineage.build_router(svc))
    app.include_router(routes_logs.build_router(svc, log_checks.reconciler))
    app.include_router(routes_metrics.build_router(svc))
    app.include_router(routes_shares.build_router(svc))
    app.include_router(console_routes.build_router(svc, authenticator))
    app.mount("/ui/static", StaticFiles(directory=console_routes.STATIC), name="console-static")
    check_routes(app)
    return app
