"""The wine example on the real node: its images, served code and data, specs and checks."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from minio import Minio
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from controller.archive.s3 import S3ArtifactStore
from controller.config import Settings
from controller.demo.pipeline import step, task_specs
from controller.demo.repo import build_demo_repo
from controller.domain.records import TERMINAL
from controller.images.build import BuildRequest, build
from controller.loopback import free_port
from tests.logs.conftest import S3_ENV
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
IMAGE_CACHE = Path.home() / ".cache" / "tracectl" / "images"
CLAIM = "wine-scratch"  # the RWO claim train and evaluate hold
HOLDERS = ("train", "evaluate")  # the tasks that claim the GPU and the RWO volume
DVC_BUCKET = "tracectl-dvc-test"
S3_KEYS = ("TRACECTL_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def image(
    registry: dict[str, str],
    target: Literal["runtime", "controller"] = "runtime",
    lock: Path | None = None,
) -> str:
    """`tracectl image build` of TARGET (with LOCK's environment layer: tracectl/wine), by
    digest; cached under ~/.cache/tracectl, so a second build only checks the registry."""
    repository = "tracectl/wine" if lock else f"tracectl/{target}"
    request = BuildRequest(
        registry=registry["TRACECTL_REGISTRY"],
        repository=repository,
        target=target,
        lock=lock,
        source=REPO,
        cache=IMAGE_CACHE,
    )
    return build(request).reference


def wine_image(registry: dict[str, str]) -> str:
    """The runtime image plus the example's uv.lock as its own layer."""
    return image(registry, lock=REPO / "examples" / "wine" / "uv.lock")


def runtime_env(stack: dict[str, str]) -> dict[str, str]:
    """What pods archive outputs and pull DVC data with: the local S3's endpoint and keys."""
    env = {key: stack[key] for key in S3_KEYS}
    return {**env, "AWS_DEFAULT_REGION": stack.get("AWS_DEFAULT_REGION", "us-east-1")}


def _bucket(stack: dict[str, str], name: str) -> None:
    endpoint = stack["TRACECTL_S3_ENDPOINT"].split("://", 1)[1]
    s3 = Minio(
        endpoint,
        access_key=stack["AWS_ACCESS_KEY_ID"],
        secret_key=stack["AWS_SECRET_ACCESS_KEY"],
        secure=False,
    )
    if not s3.bucket_exists(name):
        s3.make_bucket(name)


@contextlib.contextmanager
def served_example(root: Path, stack: dict[str, str]) -> Iterator[str]:
    """The demo repository under ROOT, its DVC data pushed to S3, served by a `git daemon` on
    127.0.0.1 (pods on the host's network clone it); yields its git:// URL."""
    _bucket(stack, DVC_BUCKET)
    remote = {
        "url": f"s3://{DVC_BUCKET}/{uuid.uuid4().hex[:8]}",
        "endpointurl": stack["TRACECTL_S3_ENDPOINT"],
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in runtime_env(stack).items():
            patch.setenv(key, value)  # dvc push from this process
        build_demo_repo(root / "served", remote)
    port, base = free_port(), root / "served"
    argv = ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}"]
    daemon = subprocess.Popen([*argv, "--listen=127.0.0.1", f"--port={port}", str(base)])
    try:
        yield f"git://127.0.0.1:{port}/repo"
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def specs(repo: str, wine: str, seed: int, service_port: int | None) -> list[dict[str, Any]]:
    """The demo's prepare/train/evaluate in the wine image, train and evaluate holding the GPU
    and CLAIM; with SERVICE_PORT, then register and serve as in example.yaml."""
    code = {"repo": repo, "ref": "main"}
    bodies = task_specs(Path(repo), {"n_estimators": 20, "max_depth": 4, "seed": seed})
    held = {"gpu": 1, "volumes": [{"claim": CLAIM, "mount_path": "/scratch", "mode": "rw"}]}
    for body in bodies:
        body["spec"]["code"] = code
        if body["name"] in HOLDERS:
            body["spec"]["resources"] = held
    if service_port is not None:
        bodies += [_register(code), _serve(code, service_port)]
    for body in bodies:
        body["spec"]["environment"] = {"image": wine}
    return bodies


def _register(code: dict[str, str]) -> dict[str, Any]:
    model = {"artifact": "task:train/model/model.pkl", "path": "model.pkl"}
    metrics = {"artifact": "task:evaluate/metrics.json", "path": "metrics.json"}
    return step(
        "register",
        code,
        inputs=[model, metrics],
        params={"model_name": f"wine-k8s-{uuid.uuid4().hex[:6]}", "min_accuracy": 0.8},
        outputs=["registered_model.json"],
    )


def _serve(code: dict[str, str], port: int) -> dict[str, Any]:
    model = {"artifact": "task:register/registered_model.json", "path": "registered_model.json"}
    port_env = {"PORT": str(port)}  # host network: a free host port
    return step("serve", code, mode="service", env=port_env, inputs=[model], timeout_s=3600)


def submit(http: httpx.Client, bodies: list[dict[str, Any]], seed: int) -> tuple[str, list[Any]]:
    """A `wine-k8s` run and its tasks, one POST each; returns the run's id and the tasks."""
    run = http.post("/v1/runs", json={"pipeline": "wine-k8s", "labels": {"seed": str(seed)}})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    tasks = []
    for body in bodies:
        response = http.post(f"/v1/runs/{run_id}/tasks", json=body)
        assert response.status_code == 201, response.text
        tasks.append(response.json())
    return run_id, tasks


def ended(http: httpx.Client, task_id: str) -> dict[str, Any]:
    """The task's record once it has ended (long polls of /wait)."""

    def terminal() -> dict[str, Any] | None:
        task = http.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 5}).json()
        return dict(task) if task["status"] in TERMINAL else None

    return wait_for(f"task {task_id} to end", terminal, 900, every=0)


def served(http: httpx.Client, task_id: str, port: int) -> dict[str, Any]:
    """The service's answers on the host's port, once it is ready."""
    wait_for(
        "the service task to run",
        lambda: http.get(f"/v1/tasks/{task_id}").json()["status"] == "running",
        600,
    )

    def health() -> dict[str, Any] | None:
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            if answer.status_code == 200:
                return dict(answer.json())
        return None

    found = wait_for("the service to answer /health", health, 600)
    rows = [[13.2, 1.78, 2.14, 11.2, 100.0, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050.0]]
    predict = httpx.post(f"http://127.0.0.1:{port}/predict", json={"instances": rows}, timeout=30)
    return {"health": found, "predict": predict.json(), "status": predict.status_code}


def ended_around_service(
    http: httpx.Client, ids: dict[str, str], serve: str, port: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The service (task IDS[SERVE]) asked once it is up, every other task of IDS waited for,
    then the service cancelled and waited for: its answers, and every task's record by key."""
    answers = served(http, ids[serve], port)
    tasks = {key: ended(http, task_id) for key, task_id in ids.items() if key != serve}
    http.post(f"/v1/tasks/{ids[serve]}/cancel")
    return answers, {**tasks, serve: ended(http, ids[serve])}


def archive(
    stack: dict[str, str], uri: str, patch: pytest.MonkeyPatch, home: Path
) -> S3ArtifactStore:
    """The archive at URI as the controller reads it (its S3 client takes the keys from the
    env, set here through PATCH)."""
    for key in S3_ENV:
        if key in stack:
            patch.setenv(key, stack[key])
    return S3ArtifactStore(Settings(home=home, archive=uri))


@dataclass
class Registered:
    """What the MLflow server holds for a `register` task: its run and the model version."""

    run_status: str
    run_metrics: dict[str, float]
    version: ModelVersion


def registered(tracking_uri: str, register: dict[str, Any]) -> Registered:
    """REGISTER's MLflow run and the version register.py made in it, read from the server."""
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    assert register["mlflow_run_id"], register
    run = mlflow.get_run(register["mlflow_run_id"])
    name = register["spec"]["params"]["model_name"]
    (version,) = mlflow.search_model_versions(f"name = '{name}'")
    return Registered(run.info.status, dict(run.data.metrics), version)
