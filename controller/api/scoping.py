"""The caller's team applied to every id a request path names, once, for every route.

`scoped` is a dependency of the whole app: an id of another team answers exactly what a
missing id answers (404, same body), before the route runs. `check_routes` refuses to build
an app with a path parameter this table does not know, so a new route fails closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.errors import NotFound
from controller.store.database import Database

Check = Callable[[Scope, Session, str], bool]

# path parameter -> (its "not found" message, the check of one id)
PATH_IDS: dict[str, tuple[str, Check]] = {
    "run_id": ("run {} does not exist", Scope.sees_run),
    "a": ("run {} does not exist", Scope.sees_run),
    "b": ("run {} does not exist", Scope.sees_run),
    "task_id": ("task {} does not exist", Scope.sees_task),
    "sha256": ("no artifact has sha256 {}", Scope.sees_artifact),
    "lease_id": ("lease {} does not exist", Scope.sees_lease),
    "share_id": ("share {} does not exist", Scope.sees_share),
}


async def scoped(request: Request) -> None:
    """404 for any id in the path that the caller's team may not see (or that is missing).

    Async, its read in one of the event loop's few worker threads: as a sync dependency it
    took a thread of the request pool per request, so 1,000 long polls arriving together
    grew that pool to its 40 threads and queued every other call behind them."""
    if request.path_params:
        db = request.app.state.service.db
        await asyncio.to_thread(_check, db, Scope.current(), dict(request.path_params))


def _check(db: Database, scope: Scope, ids: dict[str, str]) -> None:
    with db.read() as session:
        for name, value in ids.items():
            message, sees = PATH_IDS[name]
            if not sees(scope, session, str(value)):
                raise NotFound(message.format(value))


def check_routes(app: FastAPI) -> None:
    """Every path parameter of every route is one `scoped` checks (raises otherwise)."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # /docs, /openapi.json: FastAPI's own pages, without ids
        unknown = set(route.param_convertors) - set(PATH_IDS)
        if unknown:
            raise RuntimeError(
                f"{route.path}: path parameter(s) {sorted(unknown)} are not "
                "scoped to the caller's team; add them to api/scoping.PATH_IDS"
            )
