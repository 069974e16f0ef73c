"""Tokens, team isolation and the audit log, through the real API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from controller.api.app import create_app
from controller.auth.tokens import create_token, token_hash
from controller.config import Settings
from controller.store.auth_schema import ApiTokenRow
from controller.store.schema import AuditRow


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Settings]]:
    settings = Settings(
        home=tmp_path / "home",
        auth="tokens",
        supervisor_interval_s=0.05,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    app = create_app(settings, run_supervisor=False)
    with TestClient(app) as client:
        db = app.state.service.db
        tokens = {
            "red": create_token(db, "alice", "red"),
            "blue": create_token(db, "bob", "blue"),
            "admin": create_token(db, "root", "ops", role="admin"),
        }
        yield client, tokens, settings


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_requests_without_a_valid_token_are_refused(secured) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = secured
    for headers in ({}, auth("tct_wrong"), {"Authorization": "Basic abc"}):
        response = client.get("/v1/runs", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_tokens_are_stored_hashed(secured) -> None:  # type: ignore[no-untyped-def]
    client, tokens, settings = secured
    raw = (settings.home / "tracectl.db").read_bytes()
    assert tokens["red"].encode() not in raw
    db = client.app.state.service.db  # type: ignore[attr-defined]
    with db.read() as session:
        hashes = set(session.scalars(select(ApiTokenRow.token_hash)))
    assert token_hash(tokens["red"]) in hashes


def test_a_team_sees_and_acts_on_its_own_runs_only(secured) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = secured
    red_run = client.post("/v1/runs", json={"pipeline": "p"}, headers=auth(tokens["red"])).json()
    assert red_run["id"]
    task = client.post(
        f"/v1/runs/{red_run['id']}/tasks",
        headers=auth(tokens["red"]),
        json={"name": "t", "spec": {"command": [sys.executable, "-c", "1"]}},
    ).json()
    blue = auth(tokens["blue"])
    assert client.get(f"/v1/runs/{red_run['id']}", headers=blue).status_code == 404
    assert client.get(f"/v1/tasks/{task['id']}", headers=blue).status_code == 404
    assert client.post(f"/v1/tasks/{task['id']}/cancel", headers=blue).status_code == 404
    assert (
        client.post(
            f"/v1/runs/{red_run['id']}/tasks",
            headers=blue,
            json={"name": "x", "spec": {"command": ["true"]}},
        ).status_code
        == 404
    )
    assert client.get("/v1/runs", headers=blue).json()["items"] == []
    assert client.get("/v1/tasks", headers=blue).json()["items"] == []
    admin_view = client.get("/v1/runs", headers=auth(tokens["admin"])).json()["items"]
    assert [r["id"] for r in admin_view] == [red_run["id"]]
    assert client.get(f"/v1/tasks/{task['id']}", headers=auth(tokens["red"])).status_code == 200


def test_state_changing_calls_are_audited(secured) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = secured
    client.post("/v1/runs", json={"pipeline": "audited"}, headers=auth(tokens["red"]))
    client.post("/v1/runs", json={"pipeline": "bad name"}, headers=auth(tokens["blue"]))
    client.get("/v1/runs", headers=auth(tokens["red"]))  # reads are not audited
    db = client.app.state.service.db  # type: ignore[attr-defined]
    with db.read() as session:
        rows = list(session.scalars(select(AuditRow).order_by(AuditRow.id)))
    assert [(r.actor, r.action, r.target, r.detail["status"]) for r in rows] == [
        ("alice@red", "POST", "/v1/runs", 201),
        ("bob@blue", "POST", "/v1/runs", 422),
    ]
    assert all(r.source and r.created_at for r in rows)
