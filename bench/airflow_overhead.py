"""Per-task overhead as Airflow sees it: tracectl awaited and deferred vs BashOperator.

    python bench/airflow_overhead.py [--runs 5] [--sleep 2] [--out FILE]

Runs dags/tracectl_selfcheck.py RUNS times on the shared Airflow of deploy/local/airflow
(started if down) against a tracectl controller it starts (``tracectl server``, a temporary
home): each DAG run runs one command three ways in parallel, ``bash`` (BashOperator),
``awaited`` (TracectlTaskOperator in the worker) and ``deferred`` (deferred at once). The
command prints its own start and end times; per task, overhead = the task instance's
duration (end_date - start_date, what Airflow shows) minus the command's own time. For a
deferred task also: when its trigger saw the end (XCom ``trigger_fired_at``) and when Airflow
recorded the task instance's end (the trigger ends it), after the tracectl task's
``finished_at``; for the tracectl tasks the controller's own split (submit -> first line, last
line -> finished_at). One DAG run first warms the fresh controller (its first task starts its
warm runner); it is reported as ``cold``, not counted. JSON on stdout (and in --out), with the
command, the machine and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = REPO / "deploy" / "local" / "airflow"
DAG_ID = "tracectl_selfcheck"
MODES = ("bash", "awaited", "deferred")


def command(sleep_s: float) -> list[str]:
    code = f"import time; a = time.time(); time.sleep({sleep_s}); print(a, time.time())"
    return ["python3", "-c", code]


def at(stamp: str | None) -> float:
    assert stamp, "missing timestamp"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def airflow_env() -> dict[str, str]:
    subprocess.run([str(AIRFLOW), "start"], check=True, timeout=900)
    out = subprocess.run([str(AIRFLOW), "env"], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


class Controller:
    """`tracectl server` on a free port with a temporary home."""

    def __init__(self) -> None:
        from controller.loopback import free_port

        self.home = Path(tempfile.mkdtemp(prefix="tracectl-bench-af-"))
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "controller.cli.main", "server", "--home", str(self.home)]
        argv += ["--port", self.url.rsplit(":", 1)[1]]
        log = (self.home / "server.log").open("w")
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 120
        while not self._ready():
            assert time.monotonic() < deadline and self.proc.poll() is None, "no controller"
            time.sleep(0.3)

    def _ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.http.get("/readyz").status_code == 200
        return False

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class Airflow:
    def __init__(self, env: dict[str, str]) -> None:
        token = httpx.post(
            env["AIRFLOW_TOKEN_URL"],
            json={"username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]},
            timeout=30,
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{env['AIRFLOW_API_URL']}/api/v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def xcom(self, run_id: str, task: str, key: str) -> Any:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/{key}"
        value = self.ok("GET", path, params={"deserialize": "true"})["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value

    def use(self, controller_url: str) -> None:
        self.http.delete("/connections/tracectl_default")
        conn = {"connection_id": "tracectl_default", "conn_type": "tracectl"}
        self.ok("POST", "/connections", json={**conn, "host": controller_url})
        deadline = time.monotonic() + 180
        while self.http.get(f"/dags/{DAG_ID}").status_code != 200:
            assert time.monotonic() < deadline, f"{DAG_ID} not parsed"
            time.sleep(2)
        self.ok("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})

    def run(self, argv: list[str]) -> str:
        body = {"logical_date": None, "conf": {"command": argv}}
        run_id = str(self.ok("POST", f"/dags/{DAG_ID}/dagRuns", json=body)["dag_run_id"])
        deadline = time.monotonic() + 600
        while self.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"] not in (
            "success",
            "failed",
        ):
            assert time.monotonic() < deadline, f"{run_id} did not end"
            time.sleep(1)
        return run_id


def stamps(text: str) -> tuple[float, float]:
    first, last = (float(x) for x in str(text).split())
    return first, last


def measure(airflow: Airflow, controller: Controller, run_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        ti = airflow.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{mode}")
        row: dict[str, Any] = {"state": ti["state"]}
        duration = at(ti["end_date"]) - at(ti["start_date"])
        if mode == "bash":
            first, last = stamps(airflow.xcom(run_id, mode, "return_value"))
        else:
            task = controller.get(f"/v1/tasks/{airflow.xcom(run_id, mode, 'tracectl_task_id')}")
            lines = controller.get(f"/v1/tasks/{task['id']}/logs", limit=1000)["items"]
            first, last = stamps([ln for ln in lines if ln["stream"] == "stdout"][-1]["message"])
            row["submit_to_first_s"] = first - at(task["created_at"])
            row["last_to_finished_s"] = at(task["finished_at"]) - last
            if mode == "deferred":
                row["trigger_fired_after_end_s"] = float(
                    airflow.xcom(run_id, mode, "trigger_fired_at")
                ) - at(task["finished_at"])
                row["finished_to_ti_end_s"] = at(ti["end_date"]) - at(task["finished_at"])
        row["duration_s"] = duration
        row["command_s"] = last - first
        row["overhead_s"] = duration - (last - first)
        out[mode] = row
    return out


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        keys = [k for k in samples[0][mode] if k.endswith("_s")]
        out[mode] = {
            key: {
                "p50": round(statistics.median(s[mode][key] for s in samples), 3),
                "max": round(max(s[mode][key] for s in samples), 3),
            }
            for key in keys
        }
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=2.0, help="the command's own seconds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    airflow = Airflow(airflow_env())
    controller = Controller()
    try:
        airflow.use(controller.url)
        load_before = load_average()
        argv = command(args.sleep)
        cold = measure(airflow, controller, airflow.run(argv))
        samples = [measure(airflow, controller, airflow.run(argv)) for _ in range(args.runs)]
    finally:
        controller.stop()
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average": {"before": load_before, "after": load_average()},
        "task_command": shlex.join(command(args.sleep)),
        "summary": summary(samples),
        "runs": samples,
        "cold": cold,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    ok = all(s[m]["state"] == "success" for s in [cold, *samples] for m in MODES)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
