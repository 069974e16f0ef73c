"""The console's routes: HTML pages under /ui, their data routes, login, and `/` to the runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from controller import __version__, backends
from controller.api.security import COOKIE, Authenticator
from controller.auth.principal import current
from controller.auth.scope import Scope
from controller.console import logview, pages
from controller.console import resources as leases
from controller.console.lookup import look_up
from controller.console.runs import STATUSES, RunFilter, runs_page
from controller.console.timeline import STATUS_COLORS
from controller.core.service import ControllerService
from controller.errors import InvalidInput, NotFound
from controller.lineage.graph import LineageGraph
from controller.scheduling import lease_views

STATIC = Path(__file__).parent / "static"
Text = Annotated[str | None, Query(max_length=256)]
Level = Literal["trace", "debug", "info", "warn", "error", "critical"]
Stream = Literal["stdout", "stderr", "system"]


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("controller.console", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.globals.update(version=__version__, colors=STATUS_COLORS, statuses=STATUSES)
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str)
    env.filters["secs"] = lambda v: "" if v is None else f"{v:.1f} s"
    env.filters["dict_without"] = lambda q, key: urlencode({k: v for k, v in q.items() if k != key})
    env.filters["with_status"] = lambda q, s: urlencode({**q, "status": s})
    return env


def build_router(svc: ControllerService, auth: Authenticator) -> APIRouter:
    env = templates()

    def graph() -> LineageGraph:
        return LineageGraph(svc.db, Scope.current())  # the caller's runs only

    router = APIRouter(include_in_schema=False)

    def html(name: str, request: Request, **values: Any) -> HTMLResponse:
        who = current() if auth.enabled else None
        body = env.get_template(name).render(request=request, who=who, **values)
        return HTMLResponse(body)

    @router.get("/")
    @router.get("/ui")
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/runs", status_code=303)

    @router.get("/ui/runs")
    def runs(
        request: Request,
        pipeline: Text = None,
        status: Text = None,
        team: Text = None,
        dag_id: Text = None,
        since: Text = None,
        until: Text = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> HTMLResponse:
        where = RunFilter(
            pipeline=pipeline or None,
            status=status or None,
            team=team or None,
            dag_id=dag_id or None,
            since=_day("since", since),
            until=_day("until", until),
        )
        with svc.db.read() as session:
            found = runs_page(session, where, limit, cursor)
        query = where.model_dump(exclude_none=True, mode="json")
        more = (
            f"/ui/runs?{urlencode({**query, 'cursor': found.next_cursor})}"
            if found.next_cursor
            else None
        )
        return html(
            "runs.html",
            request,
            page=found,
            where=where,
            more=more,
            total=sum(found.counts.values()),
            query=query,
        )

    @router.get("/ui/runs/{run_id}")
    def run(request: Request, run_id: str) -> HTMLResponse:
        return html("run.html", request, view=pages.run_view(svc, graph(), run_id))

    @router.get("/ui/tasks/{task_id}")
    def task(request: Request, task_id: str) -> HTMLResponse:
        run_record, view, outputs = pages.task_page(svc, task_id)
        return html(
            "task.html", request, run=run_record, view=view, outputs=outputs, archive=_archive(view)
        )

    @router.get("/ui/tasks/{task_id}/lines")
    def lines(
        task_id: str,
        attempt: Annotated[int | None, Query(ge=1)] = None,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        before_seq: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        stream: Stream | None = None,
        level: Level | None = None,
        text: Text = None,
    ) -> logview.LinePage:
        """A page of the attempt's lines that pass the filters: after AFTER_SEQ, or the last
        ones before BEFORE_SEQ (the previous page)."""
        keep = logview.LineFilter(stream=stream, level=level, text=text)
        if before_seq is not None:
            return logview.page_before(svc, task_id, attempt, before_seq, limit, keep)
        return logview.page(svc, task_id, attempt, after_seq, limit, keep)

    @router.get("/ui/tasks/{task_id}/follow")
    def follow(
        task_id: str,
        attempt: Annotated[int | None, Query(ge=1)] = None,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        stream: Stream | None = None,
        level: Level | None = None,
        text: Text = None,
    ) -> StreamingResponse:
        """Server-sent events: each new line that passes the filters, then `end`."""
        svc.get_task(task_id)
        keep = logview.LineFilter(stream=stream, level=level, text=text)
        return StreamingResponse(
            _events(svc, task_id, attempt, after_seq, keep),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/ui/tasks/{task_id}/log.gz")
    def archived_log(task_id: str) -> Response:
        """The archived log of the task's latest attempt, as stored, with its sha256."""
        _run, view, _outputs = pages.task_page(svc, task_id)
        archive = _archive(view)
        if not archive:
            raise NotFound(f"task {task_id} has no archived log yet")
        data = backends.artifact_store(svc.settings).open_bytes(str(archive["uri"]))
        name = f"{task_id}-attempt{view.task.attempt}.log.gz"
        return Response(
            data,
            media_type="application/gzip",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Checksum-Sha256": str(archive["sha256"]),
            },
        )

    @router.get("/ui/tasks/{task_id}/passport")
    def passport(task_id: str) -> dict[str, Any]:
        """The task's entry of its run's passport, with the passport's hash."""
        task_record = svc.get_task(task_id)
        document = svc.passport(task_record.run_id)
        entry: dict[str, Any] = next(
            (t for t in document.get("tasks", []) if t.get("task_id") == task_id), {}
        )
        return {"content_sha256": document.get("content_sha256"), "task": entry}

    @router.get("/ui/resources")
    def resources(request: Request) -> HTMLResponse:
        with svc.db.read() as session:
            scope = Scope.current()
            units = lease_views.resources(session, scope)
            queue = lease_views.queue(session, svc.admitter, scope)
            held = leases.holdings(session, scope, active=True)
            history = leases.holdings(session, scope, active=False, since=_hours_ago())
        return html(
            "resources.html",
            request,
            units=units,
            queue=queue["items"],
            held=held,
            chart=leases.history_chart(history),
        )

    @router.get("/ui/lookup")
    def lookup(request: Request, q: Annotated[str, Query(max_length=700)] = "") -> HTMLResponse:
        answers = look_up(graph(), q) if q.strip() else []
        return html("lookup.html", request, q=q, answers=answers)

    @router.get("/ui/login")
    def login_form(request: Request, next: str = "/ui/runs", failed: bool = False) -> HTMLResponse:
        body = env.get_template("login.html").render(
            request=request, who=None, next=_local(next), failed=failed
        )
        return HTMLResponse(body, status_code=401 if failed else 200)

    @router.post("/ui/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _local((form.get("next") or ["/ui/runs"])[0])
        if not token or auth.authenticate(f"Bearer {token}") is None:
            return RedirectResponse(
                "/ui/login?" + urlencode({"next": target, "failed": 1}), status_code=303
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            path="/ui",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/ui/logout")
    def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    return router


def _day(field: str, value: str | None) -> date | None:
    """VALUE as a date; an empty form field is no filter."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(["query", field], "must be a date, YYYY-MM-DD") from exc


def _local(target: str) -> str:
    """TARGET if it is a console path, else the runs list (no open redirect)."""
    return target if target.startswith("/ui/") and not target.startswith("//") else "/ui/runs"


def _hours_ago() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC) - leases.HISTORY


def _archive(view: pages.TaskView) -> dict[str, Any] | None:
    if view.record is None or view.record.attempt != view.task.attempt:
        return None
    found = view.record.logs.get("archive")
    return dict(found) if isinstance(found, dict) and found.get("uri") else None


def _events(
    svc: ControllerService,
    task_id: str,
    attempt: int | None,
    after_seq: int,
    keep: logview.LineFilter,
) -> Iterator[str]:
    idle = 0.0
    while True:
        task = svc.get_task(task_id)
        number = attempt or max(task.attempt, 1)
        sent = False
        for chunk in logview.chunks(svc, task_id, number, after_seq):
            for line in chunk:
                after_seq = line.seq
                if keep.keeps(line):
                    yield f"id: {line.seq}\ndata: {logview.view(line).model_dump_json()}\n\n"
            sent = True
        if not sent and task.status.terminal:
            yield f"event: end\ndata: {json.dumps({'status': task.status.value})}\n\n"
            return
        if not sent:
            idle += 0.25
            if idle >= 15:  # a comment keeps proxies from closing a quiet stream
                idle = 0.0
                yield ": still running\n\n"
            time.sleep(0.25)
        else:
            yield f"event: position\ndata: {after_seq}\n\n"
