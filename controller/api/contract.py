"""The OpenAPI document as the contract: problem+json error responses, documented per route."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from controller.api.problems import PROBLEM
from controller.api.security import PROTECTED

REF = "#/components/schemas/"
WHEN = {
    400: "The request cannot be served as asked",
    401: "No valid bearer token (Authorization: Bearer <token>)",
    403: "The caller's role may not do this",
    404: "No such resource (or one the caller's team may not see)",
    409: "The resource's state does not allow this now",
    413: "The request body is over 1 MiB",
    422: "Input that does not validate; `errors` names each field",
    503: "Not ready",
}
CHALLENGE = {
    "WWW-Authenticate": {
        "schema": {"type": "string"},
        "required": True,
        "description": 'Bearer realm="tracectl"',
    }
}
BEARER = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token (tracectl token create) or an OIDC JWT",
    }
}


class ProblemError(BaseModel):
    """One invalid field of a 422."""

    loc: list[str | int] = Field(description='the field\'s location, e.g. ["body", "spec"]')
    path: str | None = Field(default=None, description="the same, dotted: spec.resources.gpu")
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """An RFC 7807 problem document: every error the API answers is one."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemError] | None = None


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may answer STATUSES, each a problem+json document."""
    return {
        status: {
            "description": WHEN[status],
            "content": {PROBLEM: {"schema": {"$ref": f"{REF}Problem"}}},
            **({"headers": CHALLENGE} if status == 401 else {}),
        }
        for status in statuses
    }


def _implied(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """Errors every route of a kind may answer: input checks, auth, body size."""
    implied = [422] if operation.get("parameters") or operation.get("requestBody") else []
    if "{" in path:
        implied.append(404)  # api/scoping.py: an id the caller's team may not see, or none
    if operation.get("requestBody"):
        implied.append(400)  # a body that is not JSON
    if path.startswith(PROTECTED):
        implied.append(401)
        if method in ("post", "put", "patch"):
            implied.append(413)
    return implied


def document(app: FastAPI) -> dict[str, Any]:
    """APP's OpenAPI document, with the errors the middleware and validation answer."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        problem = Problem.model_json_schema(ref_template=REF + "{model}")
        schemas.update(problem.pop("$defs", {}), Problem=problem)
        doc["components"]["securitySchemes"] = BEARER
        for path, methods in doc["paths"].items():
            for method, operation in methods.items():
                if path.startswith(PROTECTED):
                    operation["security"] = [{"bearer": []}]
                for status, response in errors(*_implied(path, method, operation)).items():
                    operation["responses"][str(status)] = response
        app.openapi_schema = doc
    return app.openapi_schema


def install(app: FastAPI) -> None:
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
