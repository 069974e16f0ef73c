"""The example pipeline as task specs, and its run through the controller's REST API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from controller.archive.local import sha256_file
from controller.cli.client import Client

PIPELINE = "wine-classifier"


def step(name: str, code: dict[str, str], **spec: Any) -> dict[str, Any]:
    """The body of task NAME that runs the example's ``NAME.py`` from CODE within 600 s;
    SPEC adds to or replaces the task spec's fields."""
    return {
        "name": name,
        "spec": {"command": ["python", f"{name}.py"], "code": code, "timeout_s": 600, **spec},
    }


def task_specs(repo: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    code = {"repo": str(repo), "ref": "main"}
    seed = params.get("seed", 42)
    prepared = {"test_size": params.get("test_size", 0.25), "seed": seed}
    trained = {
        "n_estimators": params.get("n_estimators", 50),
        "max_depth": params.get("max_depth", 5),
        "seed": seed,
    }
    model = {"artifact": "task:train/model/model.pkl", "path": "model.pkl"}
    return [
        step(
            "prepare",
            code,
            data={"paths": ["data/wine.csv"]},
            params=prepared,
            outputs=["prepared/train.csv", "prepared/test.csv"],
        ),
        step(
            "train",
            code,
            inputs=[{"artifact": "task:prepare/prepared/train.csv", "path": "train.csv"}],
            params=trained,
            outputs=["model/model.pkl"],
        ),
        step(
            "evaluate",
            code,
            inputs=[model, {"artifact": "task:prepare/prepared/test.csv", "path": "test.csv"}],
            outputs=["metrics.json"],
        ),
    ]


def demo_specs(repo: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The pipeline plus `report`, whose package (humanize) is in the example's uv.lock but
    not in tracectl's venv: it runs only because each task gets its repo's environment."""
    metrics = {"artifact": "task:evaluate/metrics.json", "path": "metrics.json"}
    report = step("report", {"repo": str(repo), "ref": "main"}, inputs=[metrics])
    return [*task_specs(repo, params), report]


def submit(
    client: Client, repo: Path, params: dict[str, Any], labels: dict[str, str] | None = None
) -> tuple[str, list[str]]:
    run = client.post("/v1/runs", {"pipeline": PIPELINE, "labels": labels or {}})
    task_ids = [
        client.post(f"/v1/runs/{run['id']}/tasks", body)["id"] for body in demo_specs(repo, params)
    ]
    client.post(f"/v1/runs/{run['id']}/close")  # the whole pipeline is in: no more tasks
    return run["id"], task_ids


def wait(client: Client, task_ids: list[str], console: Console, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    shown: dict[str, str] = {}
    with console.status("running the pipeline…") as status:
        while time.monotonic() < deadline:
            tasks = [client.get(f"/v1/tasks/{t}") for t in task_ids]
            for task in tasks:
                if shown.get(task["id"]) != task["status"]:
                    shown[task["id"]] = task["status"]
                    console.log(
                        f"task {task['name']:<9} {task['status']}"
                        + (f" ({task['reason']})" if task.get("reason") else "")
                    )
            done = sum(t["status"] in ("succeeded", "failed", "cancelled") for t in tasks)
            status.update(f"running the pipeline… {done}/{len(tasks)} tasks done")
            if done == len(tasks):
                return
            time.sleep(0.3)
    raise TimeoutError(f"the pipeline did not finish within {timeout_s:g}s")


def verify_outputs(lineage: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Re-hash every archived output and compare it with its lineage record."""
    checks = []
    for task in lineage["tasks"]:
        for out in (task.get("lineage") or {}).get("outputs", []):
            uri = out["uri"]
            ok = False
            if uri.startswith("file://"):
                from urllib.parse import unquote, urlparse

                ok = sha256_file(Path(unquote(urlparse(uri).path))) == out["sha256"]
            checks.append((task["name"], out["path"], ok))
    return checks
