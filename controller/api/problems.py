"""RFC 7807 problem+json responses for every error the API returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from controller.errors import TracectlError

PROBLEM = "application/problem+json"


def problem_body(
    status: int, title: str, detail: str, instance: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The RFC 7807 document, shared by the handlers here and the ASGI middleware."""
    body: dict[str, Any] = {
        "type": f"https://tracectl.dev/problems/{status}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    return body


def problem(
    status: int,
    title: str,
    detail: str,
    request: Request,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, title, detail, request.url.path, errors),
        status_code=status,
        media_type=PROBLEM,
        headers=headers,
    )


def _path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts)


def _msg(error: Mapping[str, Any]) -> str:
    """Pydantic's message; a pattern mismatch also says what was given (it names no value)."""
    given = error.get("input")
    if error["type"] == "string_pattern_mismatch" and isinstance(given, str) and len(given) < 200:
        return f"{error['msg']} (got {given!r})"
    return str(error["msg"])


def allowed(request: Request) -> str:
    """Every method of every route at the request's path (RFC 9110 15.5.6): Starlette's own
    Allow names only the first route's, and GET and POST /v1/runs are two routes."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(TracectlError)
    async def _tracectl(request: Request, exc: TracectlError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, request, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e["loc"]), "path": _path(e["loc"]), "msg": _msg(e), "type": e["type"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['path']}: {e['msg']}" for e in errors[:5])
        return problem(422, "Unprocessable input", detail, request, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed(request)
        return problem(exc.status_code, str(exc.detail), str(exc.detail), request, headers=headers)
