"""Schemathesis against the controller's own OpenAPI document, with auth on: zero 5xx."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from controller.api.app import create_app
from controller.auth.tokens import create_token
from controller.config import Settings
from controller.store.database import Database

HOME = Path(__file__).parent / ".fuzz-home"


def _app():  # type: ignore[no-untyped-def]
    import shutil

    shutil.rmtree(HOME, ignore_errors=True)
    config = Settings(home=HOME, auth="tokens",
                      tracking_uri=f"sqlite:///{HOME / 'mlflow.db'}")
    db = Database(config.store_url)
    db.migrate()
    token = create_token(db, "fuzzer", "fuzz", role="admin")
    # No supervisor: accepted tasks stay queued, so no generated command is ever run.
    return create_app(config, run_supervisor=False), token


APP, TOKEN = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_server_errors(case: schemathesis.Case) -> None:
    if case.path.endswith("/logs") and case.query and case.query.get("follow") in (True, "true"):
        case.query["follow"] = "false"  # a follow stream waits for a task that never ends
    if case.path.endswith("/wait") and case.query is not None:
        case.query["timeout_s"] = 0
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
