"""No credential of the controller's reaches a task: every file and Secret a launch creates,
on each executor, is scanned for every secret value in the controller's settings and env.

Real controller (API and supervisor) on a real PostgreSQL store whose URL carries a password;
real runner processes (local job and service), a real HTTP system (external) and the real
kube-apiserver with KWOK (Kubernetes). The tasks print their whole environment, so a secret
inherited by a command shows up in its log file or its output.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from controller.api.app import create_app
from controller.config import Settings
from tests.core.conftest import Api
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

TAG = uuid.uuid4().hex[:12]
# Every secret the controller holds: in its settings (the store URL) or its environment.
CONTROLLER_ENV = {
    "TRACECTL_PASSPORT_KEY": f"passport-key-{TAG}",
    "TRACECTL_TOKEN": f"api-token-{TAG}",
    "AWS_ACCESS_KEY_ID": f"s3-access-key-{TAG}",
    "AWS_SECRET_ACCESS_KEY": f"s3-secret-key-{TAG}",
    "LABELER_TOKEN": f"Bearer labeler-token-{TAG}",
}
DUMP_ENV = (
    "import json, os\nenv = json.dumps(dict(os.environ), sort_keys=True)\n"
    "print(env, flush=True)\nopen('env.json', 'w').write(env)\n"
)
SERVE = DUMP_ENV + (
    "import http.server\nhttp.server.ThreadingHTTPServer(('127.0.0.1', "
    "int(os.environ['PORT'])), http.server.BaseHTTPRequestHandler)"
    ".serve_forever()\n"
)


@pytest.fixture
def store_url(postgres: dict[str, str]) -> Iterator[str]:
    """A database of its own, on a URL with a password."""
    base = make_url(postgres["TRACECTL_POSTGRES_URL"])
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"tracectl_secrets_{TAG}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:  # FORCE: the app's pool may still hold connections
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def credentials_of(url: str) -> str:
    """`user:password@host:port` of URL: what a leaked store URL always shows."""
    parsed = make_url(url)
    assert parsed.password, "the store URL carries a password"
    return f"{parsed.username}:{parsed.password}@{parsed.host}:{parsed.port}"


@pytest.fixture
def labeler() -> Iterator[str]:
    """The external system the `external` task calls: answers 200 to anything."""

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None: ...

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def controller_env(
    tmp_path: Path, store_url: str, labeler: str, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Configure the controller through its environment, as a deployment does; return every
    secret value it then holds."""
    registry = tmp_path / "systems.yaml"
    registry.write_text(
        f"systems:\n  labeler:\n    base_url: {labeler}\n"
        "    auth_header: Authorization\n    auth_env: LABELER_TOKEN\n"
    )
    for key, value in {
        **CONTROLLER_ENV,
        "TRACECTL_DATABASE_URL": store_url,
        "TRACECTL_EXTERNAL_SYSTEMS": str(registry),
    }.items():
        monkeypatch.setenv(key, value)
    return [store_url, credentials_of(store_url), *CONTROLLER_ENV.values()]


def leaks(blobs: dict[str, bytes], secrets: list[str]) -> list[tuple[str, str]]:
    return [
        (where, secret)
        for where, blob in blobs.items()
        for secret in secrets
        if secret.encode() in blob
    ]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_no_file_a_local_job_service_or_external_launch_creates_holds_a_controller_secret(
    tmp_path: Path, controller_env: list[str], mlflow_uri: str
) -> None:
    settings = Settings.from_env(
        home=tmp_path / "home",
        tracking_uri=mlflow_uri,
        supervisor_interval_s=0.05,
        cancel_grace_s=1.0,
    )
    assert settings.database_url == controller_env[0]  # the controller does hold them
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        run = api.run()
        job = api.submit(
            run,
            "job",
            command=[sys.executable, "-c", DUMP_ENV],
            outputs=["env.json"],
            env={"OWN": "value"},
        )
        service = api.submit(run, "service", command=[sys.executable, "-c", SERVE], mode="service")
        external = api.submit(
            run,
            "external",
            command=["labeler", "POST", "/v1/jobs"],
            mode="external",
            params={"n": 1},
        )
        assert api.wait(job["id"])["status"] == "succeeded"
        assert api.wait(external["id"])["status"] == "succeeded"
        wait_for(
            "the service to listen",
            lambda: (client.get(f"/v1/tasks/{service['id']}").json().get("executor_ref") or {}).get(
                "ready"
            ),
        )
        assert client.post(f"/v1/tasks/{service['id']}/cancel").status_code == 200
        assert api.wait(service["id"])["status"] == "cancelled"
    files = files_under(settings.home)
    seen = json.loads(files[f"workspaces/{job['id']}/1/src/env.json"])
    assert seen["OWN"] == "value" and seen["TRACECTL_TASK_ID"] == job["id"]  # the dump ran
    launch_files = [n for n in files if n.endswith("launch.json")]
    assert len(launch_files) == 3, launch_files
    assert leaks(files, controller_env) == []


@pytest.mark.kubernetes
def test_no_secret_or_object_a_kubernetes_launch_creates_holds_a_controller_secret(
    tmp_path: Path,
    controller_env: list[str],
    kubernetes: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubernetes import client, config

    from tests.kubernetes.conftest import IMAGE, controller_namespace

    # KWOK: what is scanned is the objects the launch creates, not a container's run.
    namespace = controller_namespace(kubernetes, monkeypatch, "tracectl-secrets", kwok=True)
    settings = Settings.from_env(
        home=tmp_path / "home",
        executor="kubernetes",
        supervisor_interval_s=0.1,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    k8s = config.new_client_from_config(config_file=kubernetes["KUBECONFIG"])
    try:
        with TestClient(create_app(settings)) as http:
            api = Api(http, settings)
            run = api.run()
            task = api.submit(
                run,
                "train",
                command=["python", "train.py"],
                image=IMAGE,
                env={"HF_TOKEN": "task-own-secret"},
                secret_env=["HF_TOKEN"],
            )
            # What the launch created, read while the attempt runs (cleanup deletes it after).
            objects = wait_for("the launch Secret", lambda: launched(k8s, namespace), 120, 0.05)
            assert api.wait(task["id"], timeout=300)["status"] == "succeeded"
    finally:
        client.CoreV1Api(k8s).delete_namespace(namespace)
    secrets = [n for n in objects if n.startswith("Secret/")]
    assert secrets, objects
    assert b"task-own-secret" in b"".join(objects[n] for n in secrets)  # the scan sees values
    assert leaks({**objects, **files_under(settings.home)}, controller_env) == []


def launched(api: Any, namespace: str) -> dict[str, bytes] | None:
    """The namespace's objects, once the launch Secret is among them."""
    from kubernetes.client import ApiException

    try:
        objects = cluster_objects(api, namespace)
    except ApiException as exc:
        if exc.status == 404:  # the namespace is not made yet
            return None
        raise
    return objects if any(n.startswith("Secret/") for n in objects) else None


def cluster_objects(api: Any, namespace: str) -> dict[str, bytes]:
    """Every Secret (each value decoded), Job and pod of NAMESPACE, as bytes to scan."""
    from kubernetes import client

    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    found: dict[str, bytes] = {}
    for secret in core.list_namespaced_secret(namespace).items:
        values = [base64.b64decode(v) for v in (secret.data or {}).values()]
        found[f"Secret/{secret.metadata.name}"] = b"\n".join(values)
    for kind, items in (
        ("Job", batch.list_namespaced_job(namespace).items),
        ("Pod", core.list_namespaced_pod(namespace).items),
    ):
        for obj in items:
            found[f"{kind}/{obj.metadata.name}"] = json.dumps(
                api.sanitize_for_serialization(obj)
            ).encode()
    return found
