"""Another team's artifact is a task input only through a grant: made, listed, revoked."""

from __future__ import annotations

import json
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from controller.audit.chain import verify
from controller.cli import main
from controller.cli.client import Client
from controller.store.schema import AuditRow
from tests.security.teams import World

UNKNOWN = "f" * 64


def auth(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[who]}"}


def submit_reading(world: World, who: str, sha256: str) -> tuple[int, dict[str, object]]:
    """WHO submits a task that prints the artifact SHA256 as its input `in.txt`."""
    client = world.client
    run = client.post("/v1/runs", json={"pipeline": who}, headers=auth(world, who)).json()["id"]
    spec = {
        "command": [sys.executable, "-c", "print(open('in.txt').read())"],
        "inputs": [{"artifact": f"sha256:{sha256}", "path": "in.txt"}],
    }
    response = client.post(
        f"/v1/runs/{run}/tasks", headers=auth(world, who), json={"name": "read", "spec": spec}
    )
    return response.status_code, response.json()


def test_an_unshared_artifact_of_another_team_is_refused_like_an_unknown_one(world: World) -> None:
    status, theirs = submit_reading(world, "blue", world.red["sha256"])
    _, unknown = submit_reading(world, "blue", UNKNOWN)
    assert status == 422
    assert theirs["errors"][0]["path"] == "spec.inputs.0.artifact"
    assert theirs["detail"] == unknown["detail"].replace(UNKNOWN, world.red["sha256"])
    assert world.red["task"] not in str(theirs) and world.red["uri"] not in str(theirs)


def test_a_grant_lets_the_team_read_the_artifact_until_it_is_revoked(world: World) -> None:
    client, sha = world.client, world.red["sha256"]
    made = client.post(
        "/v1/shares", json={"sha256": f"sha256:{sha}", "team": "green"}, headers=auth(world, "red")
    )
    assert made.status_code == 201, made.text
    share = made.json()
    assert (share["owner_team"], share["team"], share["granted_by"]) == (
        "red",
        "green",
        "alice@red",
    )
    again = client.post(
        "/v1/shares", json={"sha256": sha, "team": "green"}, headers=auth(world, "red")
    )
    assert (again.status_code, again.json()["id"]) == (200, share["id"])

    status, task = submit_reading(world, "green", sha)
    assert status == 201, task
    done = client.get(
        f"/v1/tasks/{task['id']}/wait", params={"timeout_s": 120}, headers=auth(world, "green")
    ).json()
    assert done["status"] == "succeeded", done
    logs = client.get(f"/v1/tasks/{task['id']}/logs", headers=auth(world, "green")).json()
    assert "red team secret" in " ".join(line["message"] for line in logs["items"])
    assert submit_reading(world, "blue", sha)[0] == 422  # a grant to green only

    listed = {
        w: [s["id"] for s in client.get("/v1/shares", headers=auth(world, w)).json()]
        for w in ("red", "green", "blue")
    }
    assert share["id"] in listed["red"] and (listed["green"], listed["blue"]) == ([share["id"]], [])
    url = f"/v1/shares/{share['id']}"
    assert client.delete(url, headers=auth(world, "blue")).status_code == 404
    assert client.delete(url, headers=auth(world, "green")).status_code == 403
    revoked = client.delete(url, headers=auth(world, "red"))
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "alice@red"
    assert submit_reading(world, "green", sha)[0] == 422
    assert client.get("/v1/shares", headers=auth(world, "green")).json() == []
    every = client.get("/v1/shares", params={"state": "all"}, headers=auth(world, "green"))
    assert [s["revoked_at"] is not None for s in every.json()] == [True]


def test_grants_are_in_the_hash_chained_audit_log(world: World) -> None:
    client, sha = world.client, world.red["sha256"]
    share = client.post(
        "/v1/shares", json={"sha256": sha, "team": "teal"}, headers=auth(world, "red")
    ).json()
    client.delete(f"/v1/shares/{share['id']}", headers=auth(world, "red"))
    db = client.app.state.service.db  # type: ignore[attr-defined]
    with db.read() as session:
        rows = [
            (r.actor, r.action, r.target, r.detail)
            for r in session.scalars(
                select(AuditRow).where(AuditRow.action.like("share.%")).order_by(AuditRow.id)
            )
        ]
        _checked, findings = verify(session)
    entry = {"share_id": share["id"], "owner_team": "red", "team": "teal"}
    assert ("alice@red", "share.grant", f"artifact:{sha}", entry) in rows
    assert ("alice@red", "share.revoke", f"artifact:{sha}", entry) in rows
    assert findings == []


def test_a_team_shares_only_what_it_stored(world: World) -> None:
    for who, sha in (("blue", world.red["sha256"]), ("red", UNKNOWN)):
        response = world.client.post(
            "/v1/shares", json={"sha256": sha, "team": "blue"}, headers=auth(world, who)
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "sha256"
        assert response.json()["detail"].endswith(f"no stored artifact has sha256 {sha}")
    to_itself = world.client.post(
        "/v1/shares",
        json={"sha256": world.red["sha256"], "team": "red"},
        headers=auth(world, "red"),
    )
    assert to_itself.status_code == 422 and to_itself.json()["errors"][0]["path"] == "team"


def test_the_cli_grants_lists_and_revokes(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def as_red(url: str) -> Client:
        api = Client(url)
        api.http = TestClient(world.client.app, headers=auth(world, "red"))
        return api

    monkeypatch.setattr(main, "client", as_red)
    runner = CliRunner()
    made = runner.invoke(
        main.app, ["share", "grant", world.red["sha256"], "--team", "lime", "-o", "json"]
    )
    assert made.exit_code == 0, made.output
    share = json.loads(made.stdout)
    listed = runner.invoke(main.app, ["share", "list", "-o", "json"])
    assert share["id"] in [s["id"] for s in json.loads(listed.stdout)]
    revoked = runner.invoke(main.app, ["share", "revoke", str(share["id"]), "-o", "json"])
    assert json.loads(revoked.stdout)["revoked_by"] == "alice@red"
    refused = runner.invoke(main.app, ["share", "grant", UNKNOWN, "--team", "lime"])
    assert refused.exit_code == 2 and "(fields: sha256)" in " ".join(refused.output.split())
