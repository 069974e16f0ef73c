"""Errors the API turns into RFC 7807 problem documents; the CLI prints their detail."""

from __future__ import annotations

from typing import Any


class TracectlError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(TracectlError):
    status = 404
    title = "Not found"


class Conflict(TracectlError):
    status = 409
    title = "Conflict"


class InvalidInput(TracectlError):
    """Input that parsed but cannot be used; `loc` is the path of the offending field."""

    status = 422
    title = "Unprocessable input"

    def __init__(self, loc: list[str | int], message: str) -> None:
        path = ".".join(str(p) for p in loc)
        super().__init__(f"{path}: {message}", [{"loc": loc, "path": path, "msg": message}])

    @classmethod
    def many(cls, problems: list[tuple[list[str | int], str]]) -> InvalidInput:
        first = cls(*problems[0])
        for loc, message in problems[1:]:
            path = ".".join(str(p) for p in loc)
            first.errors.append({"loc": loc, "path": path, "msg": message})
            first.detail += f"; {path}: {message}"
        return first


class Forbidden(TracectlError):
    status = 403
    title = "Forbidden"
