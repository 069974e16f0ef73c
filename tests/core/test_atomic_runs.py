"""A run made with its tasks is one transaction: a refused task leaves no run behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from controller.server import free_port
from tests.core.conftest import Api, python
from tests.core.test_services import HELLO_SERVICE
from tests.server_process import ServerProcess


def run_ids(api: Api) -> list[str]:
    items = api.client.get("/v1/runs", params={"limit": 1000}).json()["items"]
    return [r["id"] for r in items]


def test_a_run_and_its_tasks_are_created_together_in_order(api: Api) -> None:
    body = {
        "pipeline": "batch",
        "close": True,
        "tasks": [
            {
                "name": "make",
                "spec": {
                    "command": python("import pathlib; pathlib.Path('out.txt').write_text('x')"),
                    "outputs": ["out.txt"],
                },
            },
            {
                "name": "read",
                "spec": {
                    "command": python("print(open('in.txt').read())"),
                    "inputs": [{"artifact": "task:make/out.txt", "path": "in.txt"}],
                },
            },
        ],
    }
    response = api.client.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "running" and run["closed_at"] is not None
    tasks = api.client.get("/v1/tasks", params={"run_id": run["id"]}).json()["items"]
    assert [t["name"] for t in tasks] == ["make", "read"]
    for task in tasks:
        assert api.wait(task["id"])["status"] == "succeeded"
    assert api.client.get(f"/v1/runs/{run['id']}").json()["status"] == "succeeded"
    events = api.client.get(f"/v1/runs/{run['id']}/lineage/events").json()["items"]
    assert [e["type"] for e in events][:4] == [
        "run.created",
        "task.submitted",
        "task.submitted",
        "run.closed",
    ]
    assert events[0]["payload"]["tasks"] == ["make", "read"]


def test_one_refused_task_refuses_the_run_and_names_every_problem(api: Api) -> None:
    before = run_ids(api)
    body: dict[str, Any] = {
        "pipeline": "batch",
        "tasks": [
            {"name": "ok", "spec": {"command": ["true"]}},
            {"name": "bad", "spec": {"command": ["true"], "code": {"repo": "/nonexistent/repo"}}},
            {
                "name": "worse",
                "spec": {
                    "command": ["true"],
                    "inputs": [{"artifact": "task:nobody/out.txt", "path": "in.txt"}],
                },
            },
        ],
    }
    response = api.client.post("/v1/runs", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    paths = [e["path"] for e in response.json()["errors"]]
    assert paths == ["tasks.1.spec.code.repo", "tasks.2.spec.inputs.0.artifact"]
    assert run_ids(api) == before


def test_two_tasks_of_one_name_or_a_task_key_are_refused(api: Api) -> None:
    before = run_ids(api)
    twice = {
        "pipeline": "batch",
        "tasks": [
            {"name": "a", "spec": {"command": ["true"]}},
            {"name": "a", "spec": {"command": ["true"]}},
        ],
    }
    response = api.client.post("/v1/runs", json=twice)
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == "tasks.1.name"
    keyed = {
        "pipeline": "batch",
        "tasks": [{"name": "a", "spec": {"command": ["true"]}, "idempotency_key": "k1"}],
    }
    response = api.client.post("/v1/runs", json=keyed)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "tasks.0.idempotency_key"
    assert run_ids(api) == before


def test_a_repeated_run_key_returns_the_first_run_and_its_tasks_once(api: Api) -> None:
    body = {"pipeline": "batch", "tasks": [{"name": "a", "spec": {"command": ["true"]}}]}
    first = api.client.post("/v1/runs", json=body, headers={"Idempotency-Key": "batch-1"})
    again = api.client.post("/v1/runs", json=body, headers={"Idempotency-Key": "batch-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    tasks = api.client.get("/v1/tasks", params={"run_id": first.json()["id"]}).json()["items"]
    assert len(tasks) == 1
    other = {**body, "tasks": [{"name": "b", "spec": {"command": ["true"]}}]}
    reused = api.client.post("/v1/runs", json=other, headers={"Idempotency-Key": "batch-1"})
    assert reused.status_code == 409


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_refused_tracectl_submit_leaves_no_run(server: ServerProcess, tmp_path: Path) -> None:
    before = server.get("/v1/runs", limit=1000)["items"]
    spec = tmp_path / "bad.yaml"
    # preflight (which submit asks first) passes it; only the submission resolves inputs
    spec.write_text(
        "command: [python, -c, 'print(1)']\n"
        "inputs: [{artifact: 'task:nobody/out.txt', path: in.txt}]\n"
    )
    result = cli(server, "submit", str(spec), "--name", "bad")
    assert result.returncode == 2, result.stdout + result.stderr
    # named as the spec file's field, not the request's tasks.0.spec path
    assert "  inputs.0.artifact: this run has no task named 'nobody'" in result.stderr
    assert server.get("/v1/runs", limit=1000)["items"] == before
    good = tmp_path / "good.yaml"
    good.write_text("command: [python, -c, 'print(1)']\n")
    made = cli(server, "submit", str(good), "--name", "good", "--wait")
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.split(" in run ")[1].split(":")[0]
    assert server.get(f"/v1/runs/{run_id}")["closed_at"] is not None
    assert [r["id"] for r in server.get("/v1/runs", limit=1000)["items"]] == [run_id] + [
        r["id"] for r in before
    ]


def first_then_second(api: Api, first: list[str]) -> list[dict[str, Any]]:
    """A closed run of a task running FIRST and a second one `after` it, made in one
    request; both tasks once ended."""
    body = {
        "pipeline": "ordered",
        "close": True,
        "tasks": [
            {"name": "first", "spec": {"command": first}},
            {"name": "second", "spec": {"command": ["true"], "after": ["first"]}},
        ],
    }
    response = api.client.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    tasks = api.client.get("/v1/tasks", params={"run_id": response.json()["id"]}).json()["items"]
    return [api.wait(t["id"]) for t in tasks]


def test_a_task_after_another_waits_for_it_without_data_and_is_created_with_the_run(
    api: Api,
) -> None:
    first, second = first_then_second(api, python("import time; time.sleep(1)"))
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    assert second["started_at"] >= first["finished_at"]


def test_a_task_after_one_that_failed_is_cancelled_saying_why(api: Api) -> None:
    _, second = first_then_second(api, python("raise SystemExit(3)"))
    assert second["status"] == "cancelled"
    assert second["reason"] == "upstream task 'first' failed"


def test_after_naming_no_earlier_task_refuses_the_whole_run(api: Api) -> None:
    before = run_ids(api)
    body = {
        "pipeline": "ordered",
        "tasks": [
            {"name": "a", "spec": {"command": ["true"], "after": ["b"]}},
            {"name": "b", "spec": {"command": ["true"]}},
        ],
    }
    response = api.client.post("/v1/runs", json=body)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == ["tasks.0.spec.after.0"]
    assert "no task named 'b'" in response.json()["errors"][0]["msg"]
    assert run_ids(api) == before


def test_a_task_after_a_service_starts_once_the_service_runs(api: Api) -> None:
    port = free_port()
    fetch = (
        f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}').read())"
    )
    body = {
        "pipeline": "served",
        "tasks": [
            {
                "name": "serve",
                "spec": {
                    "command": python(HELLO_SERVICE),
                    "mode": "service",
                    "env": {"PORT": str(port)},
                },
            },
            # running is not yet listening (readiness is the service's own): a retry covers it
            {"name": "use", "spec": {"command": python(fetch), "after": ["serve"], "retries": 3}},
        ],
    }
    response = api.client.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    run = response.json()["id"]
    serve, use = api.client.get("/v1/tasks", params={"run_id": run}).json()["items"]
    assert api.wait(use["id"])["status"] == "succeeded"
    assert api.client.get(f"/v1/tasks/{serve['id']}").json()["status"] == "running"
    assert "b'hello from serve'" in [line["message"] for line in api.logs(use["id"])]
    api.client.post(f"/v1/runs/{run}/close")
    assert api.wait(serve["id"])["status"] == "succeeded"
