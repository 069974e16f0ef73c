"""Long-running services on the local executor, and run end (close -> services stop).

Real controller (TestClient app with its supervisor thread, or a `tracectl server` process),
real runner processes and a real HTTP service listening on the port the controller gave it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from controller.api.app import create_app
from controller.auth.tokens import create_token
from controller.config import Settings
from controller.domain.records import TERMINAL
from controller.server import free_port
from controller.store.database import Database
from controller.store.schema import AuditRow
from tests.core.conftest import Api, python
from tests.server_process import ServerProcess
from tests.waiting import wait_for

# Answers GET with its task name, on the port in env PORT (the controller's contract).
HELLO_SERVICE = """
import http.server, os
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('hello from ' + os.environ['TRACECTL_TASK_NAME']).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print('listening on', os.environ['PORT'], flush=True)
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), Hello).serve_forever()
"""
ONE_GPU = "gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 1}]\n"
STOPPED = "stopped: run ended"


def wait_for_file(path: Path) -> list[str]:
    """A job that runs until PATH exists: the test decides when the run's jobs are over."""
    return python(
        f"import pathlib, time\nwhile not pathlib.Path({str(path)!r}).exists():\n"
        "    time.sleep(0.05)\nprint('gate open')\n"
    )


def wait_ready(get: Any, task_id: str, timeout: float = 90) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        task = dict(get(f"/v1/tasks/{task_id}"))
        assert task["status"] not in TERMINAL, task
        return task if (task.get("executor_ref") or {}).get("ready") else None

    return wait_for(f"service {task_id} to report ready", ready, timeout, every=0.1)


def gone(pid: int, timeout: float = 30) -> bool:
    def ended() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return wait_for(f"process {pid} to end", ended, timeout, every=0.1)


@contextmanager
def controller(tmp_path: Path, mlflow_uri: str, **settings: Any) -> Iterator[Api]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(ONE_GPU)
    config = Settings(
        home=tmp_path / "home",
        supervisor_interval_s=0.05,
        cancel_grace_s=2.0,
        tracking_uri=mlflow_uri,
        inventory_file=inventory,
        **settings,
    )
    with TestClient(create_app(config)) as client:
        yield Api(client, config)


@pytest.fixture
def ctl(tmp_path: Path, mlflow_uri: str) -> Iterator[Api]:
    with controller(tmp_path, mlflow_uri) as api:
        yield api


def test_service_gets_a_url_and_stops_succeeded_when_its_run_ends(ctl: Api, tmp_path: Path) -> None:
    run = ctl.run("serving")
    service = ctl.submit(
        run,
        "serve",
        command=python(HELLO_SERVICE),
        mode="service",
        resources={"gpu": 1, "gpu_flavor": "nvidia.com/gpu"},
    )
    gate = tmp_path / "gate"
    job = ctl.submit(run, "smoke", command=wait_for_file(gate))
    ready = wait_ready(lambda p: ctl.client.get(p).json(), service["id"])
    ref = ready["executor_ref"]
    assert ready["status"] == "running"
    assert ref["url"] == f"http://127.0.0.1:{ref['port']}"
    assert httpx.get(ref["url"], timeout=5).text == "hello from serve"
    held = ctl.client.get("/v1/leases", params={"task_id": service["id"]}).json()["items"]
    assert [lease["resource"] for lease in held] == ["gpu:gpu-worker:0"]

    closed = ctl.client.post(f"/v1/runs/{run}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["closed_at"] is not None
    again = ctl.client.post(f"/v1/runs/{run}/close")  # idempotent
    assert again.status_code == 200 and again.json()["closed_at"] == closed.json()["closed_at"]
    refused = ctl.client.post(
        f"/v1/runs/{run}/tasks", json={"name": "late", "spec": {"command": ["true"]}}
    )
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert f"run {run} was closed" in refused.json()["detail"]
    assert "takes no new tasks" in refused.json()["detail"]

    # Its job still runs, so the run has not ended: the service keeps serving.
    assert ctl.client.get(f"/v1/tasks/{service['id']}").json()["status"] == "running"
    assert httpx.get(ref["url"], timeout=5).status_code == 200
    gate.touch()
    assert ctl.wait(job["id"])["status"] == "succeeded"
    done = ctl.wait(service["id"])
    assert (done["status"], done["reason"]) == ("succeeded", STOPPED)
    assert gone(ref["pid"])
    with pytest.raises(httpx.ConnectError):
        httpx.get(ref["url"], timeout=5)
    ended = ctl.client.get(f"/v1/runs/{run}").json()
    assert ended["status"] == "succeeded" and ended["closed_at"] == closed.json()["closed_at"]
    assert ctl.client.get("/v1/leases", params={"task_id": service["id"]}).json()["items"] == []
    lineage = ctl.client.get(f"/v1/tasks/{service['id']}/lineage").json()
    assert lineage["complete"] and lineage["reason"] == STOPPED
    assert lineage["logs"]["archive"]["uri"]
    assert any(line["message"] == f"listening on {ref['port']}" for line in ctl.logs(service["id"]))
    events = ctl.client.get(f"/v1/runs/{run}/lineage/events").json()["items"]
    assert {"run.closed", "service.ready", "service.stopping"} <= {e["type"] for e in events}
    with Database(ctl.settings.store_url).read() as session:
        audits = list(session.scalars(select(AuditRow).where(AuditRow.target == run)))
    assert [a.action for a in audits] == ["run.close"]


def test_closing_an_unknown_run_is_404(ctl: Api) -> None:
    response = ctl.client.post("/v1/runs/run_nope/close")
    assert response.status_code == 404
    assert "run_nope" in response.json()["detail"]


def test_closing_is_team_scoped(tmp_path: Path, mlflow_uri: str) -> None:
    with controller(tmp_path, mlflow_uri, auth="tokens") as ctl:
        db = Database(ctl.settings.store_url)
        red = {"Authorization": f"Bearer {create_token(db, 'alice', 'red')}"}
        blue = {"Authorization": f"Bearer {create_token(db, 'bob', 'blue')}"}
        run = ctl.client.post("/v1/runs", json={"pipeline": "p"}, headers=red).json()["id"]
        assert ctl.client.post(f"/v1/runs/{run}/close", headers=blue).status_code == 404
        assert ctl.client.post(f"/v1/runs/{run}/close").status_code == 401
        assert ctl.client.get(f"/v1/runs/{run}", headers=red).json()["closed_at"] is None
        assert ctl.client.post(f"/v1/runs/{run}/close", headers=red).status_code == 200
        with db.read() as session:
            actors = [
                a.actor
                for a in session.scalars(select(AuditRow).where(AuditRow.action == "run.close"))
            ]
        assert actors == ["alice"]


def test_a_run_with_only_services_stops_them_at_close(ctl: Api) -> None:
    run = ctl.run()
    service = ctl.submit(
        run, "serve", command=python(HELLO_SERVICE), mode="service", env={"PORT": str(free_port())}
    )
    ready = wait_ready(lambda p: ctl.client.get(p).json(), service["id"])
    assert ready["executor_ref"]["url"] == f"http://127.0.0.1:{service['spec']['env']['PORT']}"
    ctl.client.post(f"/v1/runs/{run}/close")
    done = ctl.wait(service["id"])
    assert (done["status"], done["reason"]) == ("succeeded", STOPPED)


def test_a_service_still_queued_when_its_run_ends_is_cancelled_not_started(
    ctl: Api, tmp_path: Path
) -> None:
    gpu = {"gpu": 1, "gpu_flavor": "nvidia.com/gpu"}
    gate = tmp_path / "gate"
    run = ctl.run()
    job = ctl.submit(run, "train", command=wait_for_file(gate), resources=gpu)
    ctl.wait_status(job["id"], "running")
    service = ctl.submit(
        run, "serve", command=python(HELLO_SERVICE), mode="service", resources=gpu
    )  # queued: the job holds the only GPU
    assert ctl.client.post(f"/v1/runs/{run}/close").status_code == 200
    assert ctl.client.get(f"/v1/tasks/{service['id']}").json()["status"] == "queued"
    gate.touch()
    assert ctl.wait(job["id"])["status"] == "succeeded"
    done = ctl.wait(service["id"])
    assert (done["status"], done["reason"]) == ("cancelled", "run ended before the service started")
    assert done["attempt"] == 0 and done["executor_ref"] is None


def test_a_cancelled_service_of_an_open_run_is_cancelled(ctl: Api) -> None:
    run = ctl.run()
    service = ctl.submit(run, "serve", command=python(HELLO_SERVICE), mode="service")
    wait_ready(lambda p: ctl.client.get(p).json(), service["id"])
    ctl.client.post(f"/v1/tasks/{service['id']}/cancel")
    done = ctl.wait(service["id"])
    assert (done["status"], done["reason"]) == ("cancelled", "cancelled on request")


def test_a_service_that_exits_is_finished_like_a_job(ctl: Api) -> None:
    run = ctl.run()
    service = ctl.submit(run, "serve", command=python("import sys; sys.exit(3)"), mode="service")
    done = ctl.wait(service["id"])
    assert (done["status"], done["exit_code"]) == ("failed", 3)
    assert done["reason"] == "exited with code 3"
    assert "url" not in (done["executor_ref"] or {})


def test_a_service_that_never_listens_fails_with_the_port_in_the_reason(
    tmp_path: Path, mlflow_uri: str
) -> None:
    with controller(tmp_path, mlflow_uri, service_ready_timeout_s=3.0) as ctl:
        never_listens(ctl)


def never_listens(ctl: Api) -> None:
    run = ctl.run()
    service = ctl.submit(
        run, "serve", command=python("import time; time.sleep(600)"), mode="service"
    )
    done = ctl.wait(service["id"])
    port = done["executor_ref"]["port"]
    assert done["status"] == "failed"
    assert done["reason"] == (
        f"the service did not accept connections on 127.0.0.1:{port} "
        "within 3s (it must listen on the port in env PORT)"
    )
    assert gone(done["executor_ref"]["pid"]), "the runner of a failed service must be stopped"


# -- a real server process: restart while a service runs --------------------------------------


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_running(server: ServerProcess, task_id: str, timeout: float = 90) -> None:
    wait_for(
        f"task {task_id} to run",
        lambda: server.get(f"/v1/tasks/{task_id}")["status"] == "running",
        timeout,
        0.1,
    )


def wait_end(server: ServerProcess, task_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:  # the API's long poll does the waiting
        task = httpx.get(
            f"{server.url}/v1/tasks/{task_id}/wait", params={"timeout_s": 5}, timeout=15
        ).json()
        return dict(task) if task["status"] in TERMINAL else None

    return wait_for(f"task {task_id} to end", ended, timeout, every=0)


def test_a_service_is_adopted_with_its_url_after_a_restart_then_stopped_at_run_end(
    server: ServerProcess, tmp_path: Path
) -> None:
    run = httpx.post(f"{server.url}/v1/runs", json={"pipeline": "restart"}).json()["id"]
    service = httpx.post(
        f"{server.url}/v1/runs/{run}/tasks",
        json={"name": "serve", "spec": {"command": python(HELLO_SERVICE), "mode": "service"}},
    ).json()
    gate = tmp_path / "gate"
    job = httpx.post(
        f"{server.url}/v1/runs/{run}/tasks",
        json={"name": "smoke", "spec": {"command": wait_for_file(gate)}},
    ).json()
    before = wait_ready(server.get, service["id"])["executor_ref"]

    server.kill9()
    assert httpx.get(before["url"], timeout=5).text == "hello from serve"  # outlives it
    server.start()
    after = server.get(f"/v1/tasks/{service['id']}")
    assert after["status"] == "running" and after["attempt"] == 1
    assert after["executor_ref"] == before  # adopted: same process, same URL
    assert httpx.get(after["executor_ref"]["url"], timeout=5).text == "hello from serve"

    closing = cli(server, "close", run)
    assert closing.returncode == 0, closing.stderr
    assert f"run {run}: closed at" in closing.stdout
    gate.touch()
    assert wait_end(server, job["id"])["status"] == "succeeded"
    done = wait_end(server, service["id"])
    assert (done["status"], done["reason"]) == ("succeeded", STOPPED)
    assert gone(before["pid"])
    assert server.get(f"/v1/runs/{run}")["status"] == "succeeded"


def test_tracectl_submit_closes_the_run_it_made_for_a_job_but_not_for_a_service(
    server: ServerProcess, tmp_path: Path
) -> None:
    job_spec = tmp_path / "job.yaml"
    job_spec.write_text("command: [python, -c, 'print(1)']\n")
    service_spec = tmp_path / "service.yaml"
    service_spec.write_text("mode: service\ncommand: [python, -c, 'import time; time.sleep(60)']\n")
    made, said = {}, {}
    for name, spec in (("job", job_spec), ("service", service_spec)):
        result = cli(server, "submit", str(spec), "--name", name)
        assert result.returncode == 0, result.stderr
        said[name] = result.stdout
        made[name] = result.stdout.split(" in run ")[1].split(":")[0]
    assert server.get(f"/v1/runs/{made['job']}")["closed_at"] is not None
    assert server.get(f"/v1/runs/{made['service']}")["closed_at"] is None
    assert f"`tracectl runs close {made['service']}` stops the service" in said["service"]
    service = server.get("/v1/tasks", run_id=made["service"])["items"][0]
    wait_running(server, service["id"])
    assert cli(server, "close", made["service"]).returncode == 0
    done = wait_end(server, service["id"])
    assert (done["status"], done["reason"]) == ("succeeded", STOPPED)
    missing = cli(server, "close", "run_nope")
    assert missing.returncode == 3 and "run_nope" in missing.stderr
