"""Fixtures for the Airflow integration tests.

- ``airflow_python``: the Airflow venv made by ``deploy/local/airflow install`` (with the
  tracectl integration installed --no-deps).
- ``demo_repo``: the wine example as a git + DVC repository (``controller.demo.repo``).
- ``controller``: a real tracectl controller (``tracectl server``) on a free port, stopped after.
- ``airflow_home``: a migrated SQLite Airflow home for ``dag.test()`` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.loopback import free_port
from tests.stack_fixtures import DEPLOY_LOCAL, REPO
from tests.waiting import poll_until

DAGS = REPO / "dags"
RUNNER = Path(__file__).with_name("dag_test_runner.py")


def script_env(name: str) -> dict[str, str]:
    out = subprocess.run(
        [str(DEPLOY_LOCAL / name), "env"], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    started = time.monotonic()
    out = subprocess.run(
        [str(DEPLOY_LOCAL / "airflow"), "install"],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        pytest.fail(f"deploy/local/airflow install failed:\n{out.stderr[-3000:]}")
    print(f"deploy/local/airflow install: {time.monotonic() - started:.1f}s")
    return Path(script_env("airflow")["AIRFLOW_PYTHON"])


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from controller.demo.repo import build_demo_repo

    repo, _remote = build_demo_repo(tmp_path_factory.mktemp("demo"))
    return repo


ENDED = ("succeeded", "failed", "cancelled")


class Controller:
    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self.http = httpx.Client(base_url=url, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def settled(self, task_id: str, timeout: float = 180) -> dict[str, Any]:
        """The task once it has ended (each of its /wait calls blocks up to 20 s)."""
        task = poll_until(
            lambda: self.get(f"/v1/tasks/{task_id}/wait", timeout_s=20),
            lambda task: task["status"] in ENDED,
            timeout,
            every=0,
        )
        assert task["status"] in ENDED, f"{task_id} still {task['status']}"
        return dict(task)

    def runs_of(self, dag_id: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.get("/v1/runs", limit=1000)["items"]
            if r.get("airflow_dag_id") == dag_id
        ]


@pytest.fixture(scope="session")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    home = tmp_path_factory.mktemp("controller")
    port = free_port()
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli.main",
            "server",
            "--home",
            str(home),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=home,
    )
    url = f"http://127.0.0.1:{port}"

    def state() -> str:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return "ready"
        return "starting" if proc.poll() is None else "exited"

    if poll_until(state, lambda now: now != "starting", 120, 0.3) != "ready":
        proc.kill()
        pytest.fail(f"controller did not start:\n{(home / 'server.log').read_text()[-3000:]}")
    yield Controller(url, home)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="session")
def airflow_home(airflow_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Env of a migrated, private Airflow home (SQLite) for dag.test() subprocesses."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "PATH": f"{airflow_python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    out = subprocess.run(
        [str(airflow_python.parent / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    print(f"airflow db migrate (fresh SQLite): {time.monotonic() - started:.1f}s")
    return env


def dag_test(
    airflow_python: Path,
    env: dict[str, str],
    dag_file: Path,
    dag_id: str,
    conf: dict[str, Any],
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run DAG_ID from DAG_FILE with dag.test() in Airflow's venv; return the runner's JSON."""
    out = subprocess.run(
        [str(airflow_python), str(RUNNER), str(dag_file), dag_id, json.dumps(conf)],
        env={**env, **(extra_env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        pytest.fail(
            f"dag.test() failed (exit {out.returncode}):\n{out.stdout[-4000:]}\n"
            f"{out.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result["log"] = out.stdout + out.stderr
    return result
