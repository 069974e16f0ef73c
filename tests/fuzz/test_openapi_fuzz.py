"""Schemathesis against the controller's own OpenAPI document, with auth on, every check on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from controller.api.app import create_app
from controller.auth.tokens import create_token
from controller.config import Settings
from controller.store.database import Database

HOME = Path(__file__).parent / ".fuzz-home"
# A 422 of schema-valid input is allowed only for rules no schema can state: checks against
# the world (the controller's own InvalidInput, without a pydantic `type`: a repository that
# does not exist, an opaque cursor it did not issue, a look-up naming none of its keys) and a
# task spec's cross-field rules (path "spec": secret_env names keys of env, data needs code;
# "spec.environment": at most one environment source).
CROSS_FIELD = re.compile(r"(tasks\.[0-9]+\.)?spec(\.environment)?")  # also in a run's tasks


def _app():  # type: ignore[no-untyped-def]
    import shutil

    shutil.rmtree(HOME, ignore_errors=True)
    config = Settings(home=HOME, auth="tokens", tracking_uri=f"sqlite:///{HOME / 'mlflow.db'}")
    db = Database(config.store_url)
    db.migrate()
    token = create_token(db, "fuzzer", "fuzz", role="admin")
    # No supervisor: accepted tasks stay queued, so no generated command is ever run.
    return create_app(config, run_supervisor=False), token


APP, TOKEN = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.auth()
class AdminToken:
    """The admin's bearer token, as schemathesis's own auth: its checks then know it is there."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def _unstatable(response: schemathesis.Response) -> bool:
    if response.status_code != 422:
        return False
    errors = json.loads(response.content).get("errors") or []
    return bool(errors) and all(
        "type" not in e or CROSS_FIELD.fullmatch(str(e.get("path"))) for e in errors
    )


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_response_is_one_the_openapi_document_describes(case: schemathesis.Case) -> None:
    if case.path.endswith("/logs") and case.query and case.query.get("follow") in (True, "true"):
        case.query["follow"] = "false"  # a follow stream waits for a task that never ends
    if case.path.endswith("/wait") and case.query is not None:
        case.query["timeout_s"] = 0
    response = case.call()
    excluded = [positive_data_acceptance] if _unstatable(response) else []
    case.validate_response(response, excluded_checks=excluded)
