"""Task environments: built from the repo's lock with uv, cached by key, traced in lineage."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.demo.repo import example_dir
from controller.runtime import env_build
from tests.core.conftest import Api, everything, git, lose_branch

LOCKS = Path(__file__).parent / "envs"
SHOW = [
    "python",
    "-c",
    "import sys, termcolor; print('prefix', sys.prefix); print('termcolor', termcolor.__name__)",
]


@pytest.fixture
def env_api(tmp_path: Path, mlflow_uri: str) -> Iterator[Api]:
    """A controller with an environment cache of its own, so builds here are cold."""
    settings = Settings(
        home=tmp_path / "home",
        supervisor_interval_s=0.05,
        cancel_grace_s=1.0,
        retry_backoff_s=0.1,
        tracking_uri=mlflow_uri,
        env_cache=tmp_path / "envs",
    )
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def locked_repo(root: Path, version: str = "2.4.0") -> Path:
    """A git repo whose uv.lock pins termcolor (which tracectl's own venv does not have)."""
    repo = root / "colors"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "test")
    relock(repo, version)
    return repo


def relock(repo: Path, version: str) -> str:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(LOCKS / f"termcolor-{version}" / name, repo / name)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", f"termcolor {version}")
    return git(repo, "rev-parse", "HEAD")


def requirements_repo(root: Path, text: str) -> Path:
    repo = root / "reqs"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "test")
    (repo / "requirements.txt").write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "requirements")
    return repo


def lineage(api: Api, task_id: str) -> dict[str, Any]:
    return dict(api.client.get(f"/v1/tasks/{task_id}/lineage").json())


def messages(api: Api, task_id: str) -> list[str]:
    return [line["message"] for line in api.logs(task_id)]


def test_a_task_imports_a_package_its_lock_pins_that_tracectl_lacks(
    env_api: Api, tmp_path: Path
) -> None:
    with pytest.raises(ImportError):
        import termcolor  # noqa: F401
    repo = locked_repo(tmp_path)
    task = env_api.submit(env_api.run(), "colors", command=SHOW, code={"repo": str(repo)})
    done = env_api.wait(task["id"])
    assert done["status"] == "succeeded", done["reason"]
    env = lineage(env_api, task["id"])["environment"]
    assert env["kind"] == "uv_lock" and env["path"] == "uv.lock" and env["detected"] is True
    assert "termcolor==2.4.0" in env["packages"]
    assert env["lock_sha256"] and env["python_version"].startswith("3.")
    prefix = str(env_api.settings.environments_dir / env["key"])
    assert f"prefix {prefix}" in messages(env_api, task["id"])
    stored = env_api.client.get(
        "/v1/lineage/downstream", params={"node": f"env:{env['key']}"}
    ).json()
    assert f"task:{task['id']}" in [item["id"] for item in stored["items"]]


def test_a_changed_lock_is_another_env_node_and_the_diff_names_the_package(
    env_api: Api, tmp_path: Path
) -> None:
    repo = locked_repo(tmp_path)
    first = env_api.run()
    a = env_api.submit(first, "colors", command=SHOW, code={"repo": str(repo)})
    assert env_api.wait(a["id"])["status"] == "succeeded"
    relock(repo, "2.5.0")
    second = env_api.run()
    b = env_api.submit(second, "colors", command=SHOW, code={"repo": str(repo)})
    assert env_api.wait(b["id"])["status"] == "succeeded"
    key_a = lineage(env_api, a["id"])["environment"]["key"]
    key_b = lineage(env_api, b["id"])["environment"]["key"]
    assert key_a != key_b
    diff = env_api.client.get(f"/v1/runs/{first}/diff/{second}").json()["tasks"]["colors"]
    assert diff["packages"]["changes"] == [{"package": "termcolor", "a": "2.4.0", "b": "2.5.0"}]
    assert diff["environment"]["same"] is False


def test_two_concurrent_tasks_with_one_key_build_it_once(env_api: Api, tmp_path: Path) -> None:
    repo = requirements_repo(tmp_path, f"# {uuid.uuid4()}\ntermcolor==2.4.0\n")
    run = env_api.run()
    tasks = [env_api.submit(run, f"t{i}", command=SHOW, code={"repo": str(repo)}) for i in range(2)]
    ended = [env_api.wait(t["id"]) for t in tasks]
    assert [t["status"] for t in ended] == ["succeeded", "succeeded"]
    logs = [messages(env_api, t["id"]) for t in tasks]
    builds = [any(m.startswith("tracectl: building environment") for m in lines) for lines in logs]
    assert sorted(builds) == [False, True]
    envs = [p for p in env_api.settings.environments_dir.iterdir() if p.is_dir()]
    assert len(envs) == 1


def test_a_lock_that_cannot_install_fails_before_the_command_and_leaves_nothing(
    env_api: Api, tmp_path: Path
) -> None:
    repo = requirements_repo(tmp_path, "termcolor==0.0.404\n")
    task = env_api.submit(
        env_api.run(), "broken", command=["python", "-c", "print('ran')"], code={"repo": str(repo)}
    )
    done = env_api.wait(task["id"])
    assert done["status"] == "failed"
    assert done["reason"].startswith("environment: could not install requirements.txt")
    lines = messages(env_api, task["id"])
    assert any("termcolor==0.0.404" in m and "because" in m.lower() for m in lines), lines
    assert "ran" not in lines and not any(m.startswith("tracectl: exec") for m in lines)
    left = [
        p.name for p in env_api.settings.environments_dir.iterdir() if not p.name.endswith(".lock")
    ]
    assert left == []


def test_a_repo_without_a_lock_gets_a_bare_interpreter_not_the_controllers_venv(
    env_api: Api, code_repo: Path
) -> None:
    task = env_api.submit(
        env_api.run(),
        "bare",
        code={"repo": str(code_repo)},
        command=["python", "-c", "import fastapi"],
    )
    done = env_api.wait(task["id"])
    assert done["status"] == "failed"
    assert any("No module named 'fastapi'" in m for m in messages(env_api, task["id"]))
    env = lineage(env_api, task["id"])["environment"]
    assert env["kind"] == "bare" and env["detected"] is True and env["packages"] == []


def test_an_unpinned_requirement_is_a_preflight_warning(env_api: Api, tmp_path: Path) -> None:
    repo = requirements_repo(tmp_path, "termcolor>=2\nrich==13.7.1\n")
    body = {"name": "t", "spec": {"command": ["python", "-V"], "code": {"repo": str(repo)}}}
    result = env_api.client.post("/v1/preflight", json=body).json()
    found = [f for f in result["findings"] if f["code"] == "environment.unpinned"]
    assert result["refused"] is False and len(found) == 1
    assert "termcolor>=2" in found[0]["message"] and "rich" not in found[0]["message"]
    assert found[0]["loc"] == ["spec", "environment", "environment"]


def test_a_declared_lock_missing_at_the_commit_is_a_422_naming_the_field(
    env_api: Api, code_repo: Path
) -> None:
    response = env_api.client.post(
        f"/v1/runs/{env_api.run()}/tasks",
        json={
            "name": "t",
            "spec": {
                "command": ["python", "-V"],
                "code": {"repo": str(code_repo)},
                "environment": {"uv_lock": "envs/uv.lock"},
            },
        },
    )
    assert response.status_code == 422
    assert "spec.environment.uv_lock" in response.text and "envs/uv.lock" in response.text


def test_a_reproduction_rebuilds_the_same_package_list(env_api: Api, tmp_path: Path) -> None:
    repo = locked_repo(tmp_path)
    run = env_api.run()
    task = env_api.submit(run, "colors", command=SHOW, code={"repo": str(repo)})
    assert env_api.wait(task["id"])["status"] == "succeeded"
    env_api.client.post(f"/v1/runs/{run}/close")
    original = lineage(env_api, task["id"])["environment"]
    shutil.rmtree(env_api.settings.environments_dir / original["key"])  # rebuilt, not reused
    relock(repo, "2.5.0")  # the branch moved on; the reproduction keeps the recorded commit
    made = env_api.client.post(f"/v1/runs/{run}/reproduce")
    assert made.status_code == 201, made.text
    again = made.json()["tasks"]["colors"]
    assert env_api.wait(again)["status"] == "succeeded"
    rebuilt = lineage(env_api, again)["environment"]
    assert rebuilt["packages"] == original["packages"] and rebuilt["key"] == original["key"]
    assert any(m.startswith("tracectl: building environment") for m in messages(env_api, again))


def test_the_wine_report_runs_on_humanize_from_the_examples_own_lock(
    api: Api, tmp_path: Path
) -> None:
    repo = tmp_path / "wine"
    repo.mkdir()
    for name in ("pyproject.toml", "uv.lock", "report.py"):
        shutil.copy(example_dir() / name, repo / name)
    (repo / "metrics.json").write_text('{"test_accuracy": 0.977778, "test_rows": 45}')
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "w")
    task = api.submit(
        api.run(), "report", command=["python", "report.py"], code={"repo": str(repo)}
    )
    done = api.wait(task["id"], timeout=600)
    assert done["status"] == "succeeded", done["reason"]
    said = messages(api, task["id"])
    assert any("97.8% of 45 held-out wines" in m for m in said), said


def test_collect_removes_old_environments_but_never_one_in_use(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    for key in ("old", "busy", "fresh"):
        (root / key).mkdir(parents=True)
        (root / key / env_build.META).write_text("{}")
        (root / key / "payload").write_bytes(b"x" * 1000)
    for key in ("old", "busy"):
        past = time.time() - 10 * 86400
        os.utime(root / key, (past, past))
    busy = os.open(root / "busy.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(busy, fcntl.LOCK_SH)  # a running task holds it
    try:
        removed = env_build.collect(root, max_age_s=86400, max_bytes=10**9)
    finally:
        os.close(busy)
    assert removed == ["old"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["busy", "fresh"]


def test_collect_keeps_the_newest_within_the_size_limit(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    for age, key in enumerate(("newest", "middle", "oldest")):
        (root / key).mkdir(parents=True)
        (root / key / env_build.META).write_text("{}")
        (root / key / "payload").write_bytes(b"x" * 1000)
        then = time.time() - age * 60
        os.utime(root / key, (then, then))
    removed = env_build.collect(root, max_age_s=86400, max_bytes=2100)
    assert removed == ["oldest"]


def test_twin_builders_in_threads_share_one_build(tmp_path: Path) -> None:
    from controller.runtime import env_resolve

    resolved = env_resolve.resolve(None, None)
    said: list[str] = []
    got: list[env_build.BuiltEnvironment] = []

    def build() -> None:
        env, lock = env_build.acquire(resolved, tmp_path, tmp_path / "envs", said.append)
        got.append(env)
        lock.release()

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.built for e in got) == [False, False, True]
    assert len([s for s in said if s.startswith("building environment")]) == 1


def test_a_reproduction_whose_lock_file_is_gone_is_refused_naming_the_field(
    env_api: Api, tmp_path: Path
) -> None:
    repo = locked_repo(tmp_path)
    git(repo, "checkout", "-qb", "feature")
    lost = relock(repo, "2.5.0")  # the lock the task ran on lives only on this branch
    git(repo, "checkout", "-q", "main")
    run = env_api.run()
    task = env_api.submit(run, "colors", command=SHOW, code={"repo": str(repo), "ref": "feature"})
    assert env_api.wait(task["id"])["status"] == "succeeded"
    env_api.client.post(f"/v1/runs/{run}/close")
    lose_branch(repo, "feature")
    before = everything(env_api)

    response = env_api.client.post(f"/v1/runs/{run}/reproduce")

    assert response.status_code == 409, response.text
    errors = {e["path"]: e["msg"] for e in response.json()["errors"]}
    assert set(errors) == {"tasks.colors.code.commit", "tasks.colors.environment.uv_lock"}
    assert errors["tasks.colors.environment.uv_lock"] == (
        f"environment file uv.lock of task 'colors' cannot be retrieved at commit {lost[:12]}"
    )
    assert everything(env_api) == before


IMAGES = [f"registry.example/team/app@sha256:{c * 64}" for c in "ab"]


def image_run(api: Api, image: str) -> tuple[str, dict[str, Any]]:
    """A run whose task asks for IMAGE; the local executor cannot run it (no node here)."""
    run = api.run()
    task = api.submit(run, "t", command=["python", "-V"], environment={"image": image})
    done = api.wait(task["id"])
    assert done["status"] == "failed"
    assert done["reason"] == "environment: an image environment needs the kubernetes executor"
    return run, task


def test_an_image_environment_is_recorded_as_a_node_and_diffed_by_image(env_api: Api) -> None:
    (run_a, task_a), (run_b, _) = (image_run(env_api, image) for image in IMAGES)
    recorded = lineage(env_api, task_a["id"])["environment"]
    assert recorded["kind"] == "image" and recorded["image"] == IMAGES[0]
    assert not any((env_api.settings.environments_dir).glob("*"))  # nothing was built
    graph = env_api.client.get(f"/v1/runs/{run_a}/graph").json()
    assert {"from": f"env:{recorded['key']}", "to": f"task:{task_a['id']}"} in [
        {"from": e["from"], "to": e["to"]} for e in graph["edges"]
    ]
    diff = env_api.client.get(f"/v1/runs/{run_a}/diff/{run_b}").json()["tasks"]["t"]
    environment = diff["environment"]
    assert not environment["same"]
    assert (environment["a"]["kind"], environment["a"]["image"]) == ("image", IMAGES[0])
    assert (environment["b"]["kind"], environment["b"]["image"]) == ("image", IMAGES[1])
    assert environment["a"]["key"] != environment["b"]["key"]
