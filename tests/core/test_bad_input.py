"""Bad input gets a 422 naming the field, and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.core.conftest import Api, git, python


def state(api: Api, run_id: str) -> tuple[int, int]:
    tasks = api.client.get("/v1/tasks", params={"run_id": run_id}).json()["items"]
    events = api.client.get(f"/v1/runs/{run_id}/lineage/events").json()["items"]
    return len(tasks), len(events)


def reject(api: Api, run_id: str, spec: dict[str, Any], path: str, words: str) -> None:
    before = state(api, run_id)
    response = api.client.post(f"/v1/runs/{run_id}/tasks", json={"name": "t", "spec": spec})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    paths = [e["path"] for e in problem["errors"]]
    assert path in paths, (path, problem)
    assert words.lower() in problem["detail"].lower(), problem["detail"]
    assert state(api, run_id) == before


MALFORMED = [
    ({"command": ["x"], "bogus": 1}, "spec.bogus", "extra inputs"),
    ({"command": []}, "spec.command", "at least 1"),
    ({"command": [""]}, "spec.command", "must not be empty"),
    ({"command": ["x"], "resources": {"gpu": -1}}, "spec.resources.gpu", "greater than"),
    ({"command": ["x"], "resources": {"memory": "lots"}}, "spec.resources.memory", "512Mi"),
    ({"command": ["x"], "outputs": ["/etc/passwd"]}, "spec.outputs", "relative"),
    ({"command": ["x"], "outputs": ["../escape"]}, "spec.outputs", "'..'"),
    ({"command": ["x"], "env": {"TRACECTL_X": "1"}}, "spec.env", "set by the controller"),
    ({"command": ["x"], "env": {"1BAD": "1"}}, "spec.env", "valid variable"),
    ({"command": ["x"], "mode": "service", "env": {"PORT": "http"}}, "spec.env", "TCP port number"),
    (
        {"command": ["x"], "mode": "service", "env": {"PORT": "70000"}},
        "spec.env",
        "TCP port number",
    ),
    ({"command": ["x"], "secret_env": ["NOPE"]}, "spec", "not in env"),
    ({"command": ["x"], "data": {"paths": ["d.csv"]}}, "spec", "data needs code"),
    (
        {"command": ["x"], "inputs": [{"artifact": "md5:1", "path": "a"}]},
        "spec.inputs.0.artifact",
        "sha256",
    ),
    ({"command": "python x.py"}, "spec.command", "list"),
    ({"command": ["x"], "mode": "batch"}, "spec.mode", "job"),
    ({"command": ["x"], "timeout_s": 0}, "spec.timeout_s", "greater than"),
]


@pytest.mark.parametrize(("spec", "path", "words"), MALFORMED)
def test_malformed_spec_is_rejected_with_its_field(
    api: Api, spec: dict[str, Any], path: str, words: str
) -> None:
    reject(api, api.run(), spec, path, words)


def test_unknown_git_ref(api: Api, code_repo: Path) -> None:
    spec = {"command": ["python", "hello.py"], "code": {"repo": str(code_repo), "ref": "nope"}}
    reject(api, api.run(), spec, "spec.code.ref", "does not exist")


def test_nonexistent_commit(api: Api, code_repo: Path) -> None:
    spec = {"command": ["python", "hello.py"], "code": {"repo": str(code_repo), "commit": "0" * 40}}
    reject(api, api.run(), spec, "spec.code.commit", "does not exist")


def test_repo_that_is_not_a_repository(api: Api, tmp_path: Path) -> None:
    spec = {"command": ["x"], "code": {"repo": str(tmp_path / "nowhere")}}
    reject(api, api.run(), spec, "spec.code.repo", "does not exist")


def test_missing_dvc_path(api: Api, code_repo: Path) -> None:
    spec = {
        "command": ["python", "hello.py"],
        "code": {"repo": str(code_repo)},
        "data": {"paths": ["hello.py", "data/missing.csv"]},
    }
    reject(api, api.run(), spec, "spec.data.paths.0", "not tracked by dvc")


def test_unknown_data_rev(api: Api, code_repo: Path) -> None:
    spec = {
        "command": ["x"],
        "code": {"repo": str(code_repo)},
        "data": {"paths": ["a.csv"], "rev": "v9"},
    }
    reject(api, api.run(), spec, "spec.data.rev", "does not exist")


def test_unknown_upstream_task_and_undeclared_output(api: Api) -> None:
    run = api.run()
    reject(
        api,
        run,
        {"command": ["x"], "inputs": [{"artifact": "task:ghost/a.txt", "path": "a"}]},
        "spec.inputs.0.artifact",
        "no task named",
    )
    api.submit(run, "producer", command=python("open('a.txt','w').write('a')"), outputs=["a.txt"])
    # The producer runs meanwhile and logs lineage events of its own: compare tasks only.
    tasks_before = state(api, run)[0]
    response = api.client.post(
        f"/v1/runs/{run}/tasks",
        json={
            "name": "consumer",
            "spec": {
                "command": ["x"],
                "inputs": [{"artifact": "task:producer/b.txt", "path": "b"}],
            },
        },
    )
    assert response.status_code == 422
    assert "declares no output 'b.txt'" in response.json()["detail"]
    assert state(api, run)[0] == tasks_before


def test_unknown_artifact_hash(api: Api) -> None:
    spec = {"command": ["x"], "inputs": [{"artifact": "sha256:" + "a" * 64, "path": "in"}]}
    reject(api, api.run(), spec, "spec.inputs.0.artifact", "no stored artifact")


def test_unknown_run_is_404_and_creates_nothing(api: Api) -> None:
    response = api.client.post(
        "/v1/runs/run_ghost/tasks", json={"name": "t", "spec": {"command": ["x"]}}
    )
    assert response.status_code == 404
    assert api.client.get("/v1/tasks").json()["items"] == []


def test_bad_run_body(api: Api) -> None:
    response = api.client.post("/v1/runs", json={"pipeline": "has space", "extra": 1})
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert paths == {"pipeline", "extra"}
    assert api.client.get("/v1/runs").json()["items"] == []


def test_dirty_flag_and_commit_come_from_the_repo(api: Api, code_repo: Path) -> None:
    head = git(code_repo, "rev-parse", "HEAD")
    (code_repo / "hello.py").write_text("print('changed')\n")  # uncommitted change
    task = api.submit(api.run(), "t", command=["python", "hello.py"], code={"repo": str(code_repo)})
    assert task["spec"]["code"]["commit"] == head
    done = api.wait(task["id"])
    assert done["status"] == "succeeded"
    lineage = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    assert lineage["code"] == {"repo": str(code_repo), "ref": "HEAD", "commit": head, "dirty": True}
    # The task ran the committed code, not the dirty working tree.
    assert "hello from" in " ".join(line["message"] for line in api.logs(task["id"]))


@pytest.mark.parametrize(
    ("repo", "words"),
    [
        ("http://10.1.2.3/ml.git", "scheme 'http' is not allowed"),
        ("https://git.example.invalid/ml.git", "host 'git.example.invalid' is not allowed"),
        ("git@git.example.invalid:team/ml.git", "host 'git.example.invalid' is not allowed"),
        ("ftp://x/y", "scheme 'ftp'"),
    ],
)
def test_git_urls_outside_the_allowed_hosts_are_refused(api: Api, repo: str, words: str) -> None:
    reject(api, api.run(), {"command": ["x"], "code": {"repo": repo}}, "spec.code.repo", words)
