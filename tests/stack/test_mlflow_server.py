"""Smoke test of the real MLflow tracking server that deploy/local/mlflow-server runs.

Artifacts go through the server's proxy into the real S3 server (deploy/local/s3): the test
finds them in the bucket with the minio client, which proves the proxying.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import mlflow
import pytest
from minio import Minio
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.s3, pytest.mark.mlflow_server, pytest.mark.timeout(1800)]


def _minio(env: dict[str, str]) -> Minio:
    url = urlsplit(env["TRACECTL_S3_ENDPOINT"])
    return Minio(
        url.netloc,
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        secure=url.scheme == "https",
        region=env.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


@pytest.fixture
def tracking(s3: dict[str, str], mlflow_server: dict[str, str]) -> Iterator[MlflowClient]:
    """An MlflowClient on the server; the client process gets no S3 settings at all."""
    uri = mlflow_server["MLFLOW_TRACKING_URI"]
    saved = {k: os.environ.pop(k) for k in ("MLFLOW_S3_ENDPOINT_URL",) if k in os.environ}
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(previous)
        os.environ.update(saved)


def test_env_and_health(s3: dict[str, str], mlflow_server: dict[str, str]) -> None:
    # s3 is requested first so that a session which starts both also stops both
    uri = mlflow_server["MLFLOW_TRACKING_URI"]
    assert uri == "http://127.0.0.1:5000" or uri.startswith("http://127.0.0.1:")
    assert httpx.get(f"{uri}/health", timeout=10).text == "OK"
    assert httpx.get(f"{uri}/version", timeout=10).text.startswith("3.17.")
    # the host-header middleware lets both loopback names through
    port = urlsplit(uri).port
    assert httpx.get(f"http://localhost:{port}/health", timeout=10).status_code == 200


def test_run_params_metrics_artifact_in_s3_and_model_registry(
    tracking: MlflowClient, s3: dict[str, str], mlflow_server: dict[str, str], tmp_path: Path
) -> None:
    client = tracking
    suffix = uuid.uuid4().hex[:10]
    exp_id = client.create_experiment(f"smoke-{suffix}")
    experiment = client.get_experiment(exp_id)
    # the server hands out its proxy scheme, not an s3:// location the client would need keys for
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    run = client.create_run(exp_id, run_name="smoke")
    run_id = run.info.run_id
    client.log_param(run_id, "lr", "0.01")
    for step, value in enumerate((0.9, 0.5, 0.25)):
        client.log_metric(run_id, "loss", value, step=step, timestamp=int(time.time() * 1000))

    payload = f"artifact of run {run_id}\n".encode() + os.urandom(2048)
    artifact = tmp_path / "report.bin"
    artifact.write_bytes(payload)
    client.log_artifact(run_id, str(artifact), artifact_path="outputs")

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text(
        "artifact_path: model\nflavors: {}\nmlflow_version: 3.17.2\n"
    )
    (model_dir / "weights.json").write_text(json.dumps({"w": [1, 2, 3]}))
    client.log_artifacts(run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.01"}
    assert got.data.metrics == {"loss": 0.25}
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.25)]
    assert got.info.artifact_uri.startswith("mlflow-artifacts:")
    listed = {f.path for f in client.list_artifacts(run_id)}
    assert listed == {"outputs", "model"}

    # the artifact object is really in the S3 bucket (the server proxied it there)
    bucket = mlflow_server.get("TRACECTL_MLFLOW_ARTIFACT_BUCKET", "mlflow-artifacts")
    store = _minio(s3)
    key = f"{exp_id}/{run_id}/artifacts/outputs/report.bin"
    keys = {o.object_name for o in store.list_objects(bucket, prefix=f"{exp_id}/", recursive=True)}
    assert key in keys, f"{key} not among {sorted(keys)}"
    assert f"{exp_id}/{run_id}/artifacts/model/MLmodel" in keys
    resp = store.get_object(bucket, key)
    try:
        in_bucket = resp.read()
    finally:
        resp.close()
        resp.release_conn()
    assert hashlib.sha256(in_bucket).digest() == hashlib.sha256(payload).digest()

    # and it comes back through the tracking server
    downloaded = Path(client.download_artifacts(run_id, "outputs/report.bin", str(tmp_path / "dl")))
    assert downloaded.read_bytes() == payload

    # model registry: register the run's model directory, read it back
    name = f"smoke-model-{suffix}"
    try:
        version = mlflow.register_model(f"runs:/{run_id}/model", name)
        assert version.name == name
        assert str(version.version) == "1"
        read = client.get_model_version(name, version.version)
        assert read.run_id == run_id
        assert read.status == "READY"
        assert read.source.endswith("model")
        registered = client.get_registered_model(name)
        assert [v.version for v in registered.latest_versions] == [version.version]
        versions = client.search_model_versions(f"name = '{name}'")
        assert [(v.name, str(v.version)) for v in versions] == [(name, "1")]
        uri = client.get_model_version_download_uri(name, version.version)
        assert uri.endswith("model")
    finally:
        client.delete_registered_model(name)
    with pytest.raises(MlflowException):
        client.get_registered_model(name)

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
