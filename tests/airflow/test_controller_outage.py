"""The hook rides out a controller outage: a call made while the controller is stopped keeps
retrying (backoff with jitter) and succeeds once a real controller process is back; with a
short retry_for_s it gives up and says which setting to raise."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.server_process import ServerProcess

RUNNER = Path(__file__).with_name("outage_runner.py")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def stopped(tmp_path: Path, mlflow_uri: str) -> Iterator[ServerProcess]:
    """A controller that ran once and is now stopped (same home, same port)."""
    srv = ServerProcess(
        tmp_path / "home",
        {"TRACECTL_TRACKING_URI": mlflow_uri, "TRACECTL_SUPERVISOR_INTERVAL_S": "0.05"},
    )
    srv.start()
    srv.stop()
    yield srv
    srv.stop()


def runner(airflow_python: Path, url: str, retry_for_s: float, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    return subprocess.Popen(
        [str(airflow_python), str(RUNNER), url, str(retry_for_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(stream: IO[str], wanted: str) -> list[str]:
    """Lines of STREAM up to and including the first that is WANTED (or the end)."""
    seen = []
    for line in stream:
        seen.append(line.rstrip("\n"))
        if seen[-1] == wanted:
            break
    return seen


def result(proc: subprocess.Popen[str], earlier: list[str]) -> dict[str, Any]:
    rest, _ = proc.communicate(timeout=300)
    lines = earlier + rest.splitlines()
    found = [ln for ln in lines if ln.startswith("{")]
    assert proc.returncode == 0 and found, "\n".join(lines[-50:])
    return dict(json.loads(found[-1]))


def test_a_call_made_during_an_outage_succeeds_once_the_controller_is_back(
    airflow_python: Path, stopped: ServerProcess, tmp_path: Path
) -> None:
    proc = runner(airflow_python, stopped.url, 600, tmp_path / "af")
    assert proc.stdout is not None
    seen = read_until(proc.stdout, "try 3")  # two tries failed against the stopped controller
    assert seen[-1] == "try 3", "\n".join(seen)
    stopped.start()
    out = result(proc, seen)
    assert out.get("task") == "succeeded", out
    assert out["tries_for_run"] >= 3
    assert [r["id"] for r in stopped.get("/v1/runs", pipeline="outage")["items"]] == [out["run"]]


def test_the_hook_gives_up_after_retry_for_s_naming_the_setting(
    airflow_python: Path, stopped: ServerProcess, tmp_path: Path
) -> None:
    out = result(runner(airflow_python, stopped.url, 1, tmp_path / "af"), [])
    assert "controller unreachable after" in out["error"]
    assert "retry_for_s=1" in out["error"]
    assert out["tries"] >= 2
