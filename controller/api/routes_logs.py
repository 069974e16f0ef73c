"""GET /v1/logs/search: log lines across tasks, for users without Kibana.

Needs a search-index log reader (``log_reader = "opensearch://..."``); the file reader keeps
one file per attempt and cannot search across them, so the route answers 409 then.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from controller.core.service import ControllerService
from controller.errors import Conflict

Filter = Annotated[str | None, Query(max_length=256)]


def build_router(service: ControllerService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["logs"])

    @router.get("/logs/search")
    def search_logs(
        run_id: Filter = None, task_id: Filter = None, dag_id: Filter = None,
        text: Annotated[str | None, Query(max_length=1000)] = None,
        level: Literal["trace", "debug", "info", "warn", "error", "critical"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Lines matching every filter, newest first; `text` matches words of the message."""
        search = getattr(service.logs, "search", None)
        if search is None:
            raise Conflict("log search needs a search-index log reader "
                           "(TRACECTL_LOG_READER=opensearch://host:port)")
        items = search(run_id=run_id, task_id=task_id, dag_id=dag_id, text=text, level=level,
                       limit=limit)
        return {"items": items, "count": len(items)}

    return router
