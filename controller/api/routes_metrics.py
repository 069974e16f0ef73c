"""GET /metrics: a few controller figures in the Prometheus text format (no client library).

- ``tracectl_tasks{status}``: tasks by status, now;
- ``tracectl_log_reconciliation_mismatches_total``: log copies found wrong, summed over all
  checks (a counter kept in the store, so it survives restarts);
- ``tracectl_log_reconciliation_copies{copy,status}``: the latest result of every checked
  task attempt's copies.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from controller.core.service import ControllerService
from controller.logs.reconcile_records import counts
from controller.store.schema import TaskRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_router(service: ControllerService) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        with service.db.read() as session:
            tasks = session.execute(
                select(TaskRow.status, func.count()).group_by(TaskRow.status)
            ).all()
            checks = counts(session)
        out = ["# HELP tracectl_tasks Tasks by status.", "# TYPE tracectl_tasks gauge"]
        out += [f'tracectl_tasks{{status="{label(s)}"}} {n}' for s, n in sorted(tasks)]
        out += [
            "# HELP tracectl_log_reconciliation_mismatches_total Log copies found missing, "
            "extra or corrupt, over all checks.",
            "# TYPE tracectl_log_reconciliation_mismatches_total counter",
            f"tracectl_log_reconciliation_mismatches_total {checks['mismatches_total']}",
            "# HELP tracectl_log_reconciliation_copies Latest check of each task attempt's "
            "log copies, by copy and status.",
            "# TYPE tracectl_log_reconciliation_copies gauge",
        ]
        out += [
            f'tracectl_log_reconciliation_copies{{copy="{label(c)}",status="{label(s)}"}} {n}'
            for c, s, n in sorted(checks["copies"])
        ]
        return PlainTextResponse("\n".join(out) + "\n", media_type=CONTENT_TYPE)

    return router
