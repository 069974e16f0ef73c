"""Team isolation on every route, generated from the OpenAPI document (not a hand list).

Team red runs a small task with code, an output artifact and a lease; team blue then calls
every route and method of `app.openapi()` with red's ids. Each call must answer exactly what
the same call with ids that do not exist answers (404 where the path names an id), and no
answer may carry red's ids, hashes or commit. A route added later is covered by the same
loop; a route with a path parameter `api/scoping.py` does not know fails at app build.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import Response

from controller.api.scoping import check_routes
from tests.security.teams import QUERY_FILL, World

# Open on purpose, and not under /v1: the kubelet's and the load balancer's probes and the
# Prometheus scrape carry no token; they answer health and counts, never a team's records.
PUBLIC = {"/healthz", "/readyz", "/metrics"}
METHODS = ("get", "post", "put", "patch", "delete")


def operations(app: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in app.openapi()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def calls(operation: dict[str, Any]) -> list[dict[str, str]]:
    """The query strings to try: the required parameters, then one record-naming one each."""
    params = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    required = [p["name"] for p in params if p.get("required")]
    unknown = [n for n in required if n not in QUERY_FILL]
    assert not unknown, f"no value to fill required query parameter(s) {unknown}: add them"
    base = {n: QUERY_FILL[n][0] for n in required}
    out = [base]
    for p in params:
        for key in QUERY_FILL.get(p["name"], []):
            variant = {**base, p["name"]: key}
            if variant not in out:
                out.append(variant)
    return out


def secrets(red: dict[str, str]) -> list[str]:
    return [red[k] for k in ("run", "task", "sha256", "uri", "commit", "mlflow_run_id") if red[k]]


def substituted(response: Response, world: World) -> str:
    """RESPONSE's body with the made-up ids written as red's (to compare with red's call)."""
    text = response.text
    for key, value in world.fake.items():
        text = text.replace(value, world.red[key])
    return text


def test_another_team_gets_what_a_missing_id_gets_on_every_route(world: World) -> None:
    checked = 0
    for method, path, operation in operations(world.client.app):
        if path in PUBLIC:
            continue
        for query in calls(operation):
            theirs = world.call(method, path, query, world.tokens["blue"], world.red)
            missing = world.call(method, path, query, world.tokens["blue"], world.fake)
            where = f"{method.upper()} {path} {query}"
            if "{" in path:
                assert theirs.status_code == 404, f"{where}: {theirs.status_code} {theirs.text}"
            names_red = "{" in path or any(v in world.red for v in query.values())
            if names_red:
                assert theirs.status_code == missing.status_code, where
                assert theirs.text == substituted(missing, world), where
            else:
                leaked = [s for s in secrets(world.red) if s in theirs.text]
                assert not leaked, f"{where} shows red's {leaked}: {theirs.text[:300]}"
            checked += 1
    assert checked > 40  # every route, several look-up kinds: the loop really ran


def test_the_owning_team_and_an_admin_reach_the_same_records(world: World) -> None:
    """The ids filled in above are real: red and an admin get past the 404 on every GET."""
    for method, path, operation in operations(world.client.app):
        if method != "get" or "{" not in path:
            continue
        query = calls(operation)[0]
        for who in ("red", "admin"):
            response = world.call(method, path, query, world.tokens[who], world.red)
            assert response.status_code != 404, f"{who} GET {path}: {response.text}"
    admin_runs = world.client.get(
        "/v1/runs", headers={"Authorization": f"Bearer {world.tokens['admin']}"}
    ).json()["items"]
    assert world.red["run"] in [r["id"] for r in admin_runs]


def test_walks_and_lookups_find_red_records_for_red_only(world: World) -> None:
    lookups = {
        "sha256": world.red["sha256"],
        "commit": world.red["commit"],
        "uri": world.red["uri"],
    }
    for key, value in lookups.items():
        mine = world.call("get", "/v1/lineage/lookup", {key: value}, world.tokens["red"], {})
        theirs = world.call("get", "/v1/lineage/lookup", {key: value}, world.tokens["blue"], {})
        assert world.red["task"] in mine.text, key
        assert world.red["task"] not in theirs.text, key
    node = {"node": f"commit:{world.red['commit']}"}
    mine = world.call("get", "/v1/lineage/downstream", node, world.tokens["red"], {})
    theirs = world.call("get", "/v1/lineage/downstream", node, world.tokens["blue"], {})
    assert [i["id"] for i in mine.json()["items"]][:1] == [f"task:{world.red['task']}"]
    assert theirs.json()["items"] == [] and theirs.json()["edges"] == []


def test_every_route_but_the_probes_wants_a_valid_token(world: World) -> None:
    for method, path, _operation in operations(world.client.app):
        if path in PUBLIC:
            continue
        for token in (None, "tct_garbage", "not-even-a-token"):
            response = world.call(method, path, {}, token, world.red)
            assert response.status_code == 401, f"{method.upper()} {path} with {token}"
            assert json.loads(response.text)["status"] == 401


def test_the_public_routes_are_only_the_probes(world: World) -> None:
    public = {
        path for _m, path, _o in operations(world.client.app) if not path.startswith(("/v1", "/ui"))
    }
    assert public == PUBLIC


def test_an_app_with_a_path_parameter_nobody_scopes_is_refused() -> None:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    def thing(thing_id: str) -> str:
        return thing_id

    with pytest.raises(RuntimeError, match="thing_id"):
        check_routes(app)


def test_another_teams_idempotency_key_does_not_return_its_run(world: World) -> None:
    body, key = {"pipeline": "nightly"}, {"Idempotency-Key": "nightly-2026-12-05"}
    red = world.client.post(
        "/v1/runs", json=body, headers={**key, "Authorization": f"Bearer {world.tokens['red']}"}
    )
    blue = world.client.post(
        "/v1/runs", json=body, headers={**key, "Authorization": f"Bearer {world.tokens['blue']}"}
    )
    assert red.status_code == 201
    assert blue.status_code == 409 and red.json()["id"] not in blue.text


def test_ids_too_long_for_the_store_are_missing_not_errors(world: World) -> None:
    blue = {"Authorization": f"Bearer {world.tokens['blue']}"}
    huge = "9" * 30
    assert world.client.delete(f"/v1/shares/{huge}", headers=blue).status_code == 404
    assert (
        world.client.post(
            f"/v1/leases/{huge}/release", headers=blue, json={"reason": "x"}
        ).status_code
        == 404
    )
