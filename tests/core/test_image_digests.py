"""Images are pinned by digest at submit, through the real registry (deploy/local/registry)."""

from __future__ import annotations

import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from tests.core.conftest import Api
from tests.core.token_registry import token_registry
from tests.registry_images import push, unique_repository
from tests.waiting import wait_for

pytestmark = pytest.mark.registry
PASSWORD = "s3cret-pull"


@pytest.fixture
def host(registry: dict[str, str]) -> str:
    return registry["TRACECTL_REGISTRY"]


def pinning_api(settings: Settings, **update: Any) -> Api:
    pinned = settings.model_copy(update={"registry_api": "oci", **update})
    return Api(TestClient(create_app(pinned, run_supervisor=False)), pinned)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    made = pinning_api(settings)
    with made.client:
        yield made


def errors(response: Any) -> dict[str, str]:
    return {e["path"]: e["msg"] for e in response.json()["errors"]}


def test_a_tag_is_pinned_to_its_digest_in_the_task_record_and_passport(
    api: Api, host: str, tmp_path: Path
) -> None:
    repo = unique_repository()
    digest = push(host, repo, "1.0", tmp_path)
    run = api.run()
    task = api.submit(run, "train", command=["x"], image=f"{host}/{repo}:1.0")
    pinned = f"{host}/{repo}@{digest}"
    assert digest.startswith("sha256:") and task["spec"]["image"] == pinned
    lineage = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    assert lineage["resolved"]["image"] == {
        "requested": f"{host}/{repo}:1.0",
        "digest": digest,
        "pinned": pinned,
    }
    [finding] = [f for f in lineage["resolved"]["preflight"] if f["code"] == "image.mutable_tag"]
    assert finding["action"] == "warn" and pinned in finding["message"]
    passport = api.client.get(f"/v1/runs/{run}/passport").json()
    assert [t["image"] for t in passport["tasks"]] == [pinned]


def test_an_image_environment_is_an_env_node_of_its_digest(
    api: Api, host: str, tmp_path: Path
) -> None:
    repo = unique_repository()
    digest = push(host, repo, "py", tmp_path)
    run = api.run()
    task = api.submit(run, "t", command=["x"], environment={"image": f"{host}/{repo}:py"})
    environment = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["resolved"][
        "environment"
    ]
    assert environment["kind"] == "image" and environment["image"] == f"{host}/{repo}@{digest}"
    node = f"env:{environment['key']}"

    def edge() -> dict[str, Any] | None:
        graph = api.client.get(f"/v1/runs/{run}/graph").json()
        return next((e for e in graph["edges"] if e["from"] == node), None)

    found = wait_for("the env node's edge", edge, 30)
    assert found["to"] == f"task:{task['id']}" and found["kind"] == "ran_in"


def test_a_moved_tag_pins_each_task_to_the_digest_it_named_at_submit(
    api: Api, host: str, tmp_path: Path
) -> None:
    repo = unique_repository()
    first = push(host, repo, "latest", tmp_path, label="a")
    run = api.run()
    before = api.submit(run, "before", command=["x"], image=f"{host}/{repo}")
    second = push(host, repo, "latest", tmp_path, label="b")
    after = api.submit(run, "after", command=["x"], image=f"{host}/{repo}")
    assert first != second
    assert before["spec"]["image"] == f"{host}/{repo}@{first}"
    assert after["spec"]["image"] == f"{host}/{repo}@{second}"


def test_an_image_not_in_the_registry_is_refused_naming_the_field(api: Api, host: str) -> None:
    repo = unique_repository()
    runs_before = len(api.client.get("/v1/runs", params={"limit": 1000}).json()["items"])
    response = api.client.post(
        "/v1/runs",
        json={
            "pipeline": "p",
            "tasks": [
                {"name": "ok", "spec": {"command": ["x"]}},
                {"name": "t", "spec": {"command": ["x"], "image": f"{host}/{repo}:nope"}},
            ],
        },
    )
    assert response.status_code == 422, response.text
    msg = errors(response)["tasks.1.spec.image"]
    assert "is not in the registry" in msg and "'nope'" in msg
    runs_after = len(api.client.get("/v1/runs", params={"limit": 1000}).json()["items"])
    assert runs_after == runs_before


def test_a_registry_that_does_not_answer_refuses_the_submit_naming_the_field(api: Api) -> None:
    run = api.run()
    response = api.client.post(
        f"/v1/runs/{run}/tasks",
        json={"name": "t", "spec": {"command": ["x"], "image": "127.0.0.1:9/team/app:1"}},
    )
    assert response.status_code == 422
    assert "cannot ask the registry 127.0.0.1:9" in errors(response)["spec.image"]


def test_the_mutable_tag_policy_refuses_tags_and_takes_digests(
    settings: Settings, host: str, tmp_path: Path
) -> None:
    repo = unique_repository()
    digest = push(host, repo, "2", tmp_path)
    strict = pinning_api(settings, preflight="image.mutable_tag=refuse")
    with strict.client:
        run = strict.run()
        refused = strict.client.post(
            f"/v1/runs/{run}/tasks",
            json={"name": "t", "spec": {"command": ["x"], "image": f"{host}/{repo}:2"}},
        )
        assert refused.status_code == 422
        assert "[image.mutable_tag]" in errors(refused)["spec.image"]
        task = strict.submit(run, "t", command=["x"], image=f"{host}/{repo}@{digest}")
        assert task["spec"]["image"] == f"{host}/{repo}@{digest}"


def registry_binary() -> Path:
    """The distribution binary deploy/local/registry built (the `registry` fixture ran it)."""
    cache = Path(os.environ.get("TRACECTL_CACHE", Path.home() / ".cache" / "tracectl"))
    return cache / "registry" / "bin" / "registry"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def locked_registry(registry: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A second real registry (the same binary) that asks for a password (htpasswd, bcrypt)."""
    port = free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))
    (tmp_path / "htpasswd").write_text(f"ci:{hashed}\n")
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'storage'}}}}}\n"
        f"auth: {{htpasswd: {{realm: test, path: {tmp_path / 'htpasswd'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        [str(registry_binary()), "serve", str(tmp_path / "config.yml")],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"},
    )

    def asks_for_password() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    try:
        wait_for("the password-protected registry", asks_for_password, 60)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_registry_that_asks_for_a_password_gets_the_configured_credentials(
    settings: Settings, locked_registry: str, tmp_path: Path
) -> None:
    repo = unique_repository()
    digest = push(locked_registry, repo, "1", tmp_path, creds=f"ci:{PASSWORD}")
    image = f"{locked_registry}/{repo}:1"
    anonymous = pinning_api(settings)
    with anonymous.client:
        refused = anonymous.client.post(
            f"/v1/runs/{anonymous.run()}/tasks",
            json={"name": "t", "spec": {"command": ["x"], "image": image}},
        )
    assert refused.status_code == 422
    assert "set TRACECTL_REGISTRY_USERNAME" in errors(refused)["spec.image"]
    allowed = pinning_api(settings, registry_username="ci", registry_password=PASSWORD)
    with allowed.client:
        task = allowed.submit(allowed.run(), "t", command=["x"], image=image)
    assert task["spec"]["image"] == f"{locked_registry}/{repo}@{digest}"


def test_a_moved_tag_makes_a_new_environment_node(api: Api, host: str, tmp_path: Path) -> None:
    repo = unique_repository()
    run = api.run()
    keys = []
    for label in ("a", "b"):
        push(host, repo, "py", tmp_path, label=label)
        task = api.submit(run, label, command=["x"], environment={"image": f"{host}/{repo}:py"})
        lineage = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
        keys.append(lineage["resolved"]["environment"]["key"])
    assert keys[0] != keys[1]


def test_a_registry_behind_a_token_service_is_asked_with_a_pull_token(
    settings: Settings, registry: dict[str, str], tmp_path: Path
) -> None:
    with token_registry(registry_binary(), tmp_path, free_port()) as (host, asked):
        repo = unique_repository()
        digest = push(host, repo, "1", tmp_path)
        asked.clear()
        pinned = pinning_api(settings)
        with pinned.client:
            task = pinned.submit(pinned.run(), "t", command=["x"], image=f"{host}/{repo}:1")
    assert task["spec"]["image"] == f"{host}/{repo}@{digest}"
    assert asked == [f"repository:{repo}:pull"]
