"""RFC 7807 problem+json responses for every error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.errors import TracectlError

PROBLEM = "application/problem+json"


def problem_body(status: int, title: str, detail: str, instance: str,
                 errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
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


def problem(status: int, title: str, detail: str, request: Request,
            errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(problem_body(status, title, detail, request.url.path, errors),
                        status_code=status, media_type=PROBLEM)


def _path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(TracectlError)
    async def _tracectl(request: Request, exc: TracectlError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, request, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e["loc"]), "path": _path(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['path']}: {e['msg']}" for e in errors[:5])
        return problem(422, "Unprocessable input", detail, request, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), request)
