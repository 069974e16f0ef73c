"""Two teams and an admin over one controller with token auth, and red's finished task."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response


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
    "share_id": "share",
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
    """A finished run of red's with a task, an output artifact, a lease and a grant."""
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
    share = client.post(
        "/v1/shares", json={"sha256": artifact["sha256"], "team": "cyan"}, headers=red
    ).json()
    return {
        "run": run,
        "task": task["id"],
        "sha256": artifact["sha256"],
        "uri": artifact["uri"],
        "mlflow_run_id": done.get("mlflow_run_id") or "",
        "lease": str(leases[0]["id"]),
        "share": str(share["id"]),
    }


def inventory(root: Path) -> Path:
    """A CPU quota for red, so its task holds a lease (a real `lease_id` to ask about)."""
    path = root / "inventory.yaml"
    path.write_text("quotas:\n  red: {cpu: 2, memory: 1Gi}\n")
    return path
