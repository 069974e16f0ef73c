"""Team isolation on every route, generated from the OpenAPI document (not a hand list).

Team red runs a small task with code, an output artifact and a lease; team blue then calls
every route and method of `app.openapi()` with red's ids. Each call must answer exactly what
the same call with ids that do not exist answers (404 where the path names an id), and no
answer may carry red's ids, hashes or commit. A route added later is covered by the same
loop; a route with a path parameter `api/scoping.py` does not know fails at app build.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from controller.api.app import create_app
from controller.api.scoping import check_routes
from controller.auth.tokens import create_token
from controller.config import Settings

# Open on purpose, and not under /v1: the kubelet's and the load balancer's probes and the
# Prometheus scrape carry no token; they answer health and counts, never a team's records.
PUBLIC = {"/healthz", "/readyz", "/metrics"}
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str]
    red: dict[str, str]  # what red's records are called: run, task, sha256, commit, ...
    fake: dict[str, str]  # the same keys, values no record has

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        token: str | None,
        values: dict[str, str],
    ) -> Response:
        url = path.format(**{k: values[v] for k, v in PATH_FILL.items() if f"{{{k}}}" in path})
        query = {k: values.get(v, v) for k, v in params.items()}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {} if method in ("post", "put", "patch") else None
        return self.client.request(method.upper(), url, params=query, headers=headers, json=body)


PATH_FILL = {
    "run_id": "run",
    "a": "run",
    "b": "run",
    "task_id": "task",
    "sha256": "sha256",
    "lease_id": "lease",
}
# Query parameters that name a record: one call each, with red's value (or a node of red's).
QUERY_FILL: dict[str, list[str]] = {
    "run_id": ["run"],
    "task_id": ["task"],
    "sha256": ["sha256"],
    "uri": ["uri"],
    "commit": ["commit"],
    "mlflow_run_id": ["mlflow_run_id"],
    "model": ["model"],
    "dataset": ["dataset"],
    "node": ["task_node", "artifact_node", "commit_node"],
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def code_repo(root: Path) -> tuple[Path, str]:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.invalid")
    git(root, "config", "user.name", "test")
    (root / "make.py").write_text(
        "import os\nos.makedirs('out', exist_ok=True)\n"
        "open('out/model.txt', 'w').write('red team secret')\n"
    )
    git(root, "add", ".")
    git(root, "commit", "-qm", "first")
    return root, git(root, "rev-parse", "HEAD")


def red_records(client: TestClient, token: str, repo: Path) -> dict[str, str]:
    """A finished run of red's with a task, an output artifact and a lease."""
    red = {"Authorization": f"Bearer {token}"}
    run = client.post("/v1/runs", json={"pipeline": "red"}, headers=red).json()["id"]
    spec = {
        "command": [sys.executable, "make.py"],
        "code": {"repo": str(repo), "ref": "main"},
        "outputs": ["out/model.txt"],
        "resources": {"cpu": 0.1},
    }
    task = client.post(
        f"/v1/runs/{run}/tasks", headers=red, json={"name": "make", "spec": spec}
    ).json()
    done = client.get(f"/v1/tasks/{task['id']}/wait", params={"timeout_s": 120}, headers=red).json()
    assert done["status"] == "succeeded", done
    artifact = client.get(f"/v1/tasks/{task['id']}/artifacts", headers=red).json()[0]
    leases = client.get("/v1/leases", params={"state": "all"}, headers=red).json()["items"]
    return {
        "run": run,
        "task": task["id"],
        "sha256": artifact["sha256"],
        "uri": artifact["uri"],
        "mlflow_run_id": done.get("mlflow_run_id") or "",
        "lease": str(leases[0]["id"]),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("scoping")
    settings = Settings(
        home=root / "home",
        auth="tokens",
        supervisor_interval_s=0.05,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        inventory_file=inventory(root),
    )
    repo, commit = code_repo(root / "code")
    app = create_app(settings)
    with TestClient(app) as client:
        db = app.state.service.db
        tokens = {
            "red": create_token(db, "alice", "red"),
            "blue": create_token(db, "bob", "blue"),
            "admin": create_token(db, "root", "ops", role="admin"),
        }
        red = red_records(client, tokens["red"], repo)
        red.update(
            commit=commit,
            model="red-model/1",
            dataset="data/wine.csv@" + "0" * 32,
            dataset_path="data/wine.csv",
            dataset_md5="0" * 32,
            task_node=f"task:{red['task']}",
            artifact_node=f"artifact:{red['sha256']}",
            commit_node=f"commit:{commit}",
        )
        fake = {
            "run": "run_" + "0" * 26,
            "task": "task_" + "0" * 26,
            "sha256": "f" * 64,
            "uri": "file:///nowhere/out/model.txt",
            "mlflow_run_id": "0" * 32,
            "lease": "999999",
            "commit": "e" * 40,
            "model": "no-model/1",
            "dataset": "data/none.csv@" + "1" * 32,
            "dataset_path": "data/none.csv",
            "dataset_md5": "1" * 32,
            "task_node": "task:task_" + "0" * 26,
            "artifact_node": "artifact:" + "f" * 64,
            "commit_node": "commit:" + "e" * 40,
        }
        yield World(client, tokens, red, fake)


def inventory(root: Path) -> Path:
    """A CPU quota for red, so its task holds a lease (a real `lease_id` to ask about)."""
    path = root / "inventory.yaml"
    path.write_text("quotas:\n  red: {cpu: 2, memory: 1Gi}\n")
    return path


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
