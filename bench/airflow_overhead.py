"""Per-task overhead as Airflow sees it: tracectl awaited and deferred vs its peer operator.

    python bench/airflow_overhead.py [--runs 5] [--sleep 2] [--out FILE]
    python bench/airflow_overhead.py --executor kubernetes [--image REF]   # + the real node

Runs a self-check DAG RUNS times on the shared Airflow of deploy/local/airflow (started if
down) against a tracectl controller it starts (``tracectl server``, a temporary home): each
DAG run runs one command three ways in parallel, the peer, ``awaited`` (TracectlTaskOperator in
the worker) and ``deferred`` (deferred at once).

``--executor local`` (default): dags/tracectl_selfcheck.py, the peer ``bash`` (BashOperator)
runs the command in the worker, the controller on its local executor.
``--executor kubernetes``: dags/tracectl_selfcheck_kubernetes.py, the peer ``kpo``
(KubernetesPodOperator) runs the command in a pod of the runtime image on the real node
``localhost`` (host network), and the controller runs the Kubernetes executor with the same
image, node and network (bench/dispatch_real.py's set-up: the image `tracectl image build`
pushes, by digest, unless --image; a fresh namespace, watched, deleted at the end). A pod
watch splits each task's time: the task instance's start -> its pod Running -> the command's
start, and the command's end -> the pod Succeeded -> the task instance's end.

The command prints its own start and end times; per task, overhead = the task instance's
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
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.machine import load, machine  # noqa: E402

AIRFLOW = REPO / "deploy" / "local" / "airflow"
STAMPS = re.compile(r"(\d{9,}\.\d+) (\d{9,}\.\d+)")  # the command's own start and end


@dataclass(frozen=True)
class Side:
    """What one executor's comparison runs: the DAG and its peer task."""

    dag_id: str
    peer: str

    @property
    def modes(self) -> tuple[str, str, str]:
        return (self.peer, "awaited", "deferred")


SIDES = {
    "local": Side("tracectl_selfcheck", "bash"),
    "kubernetes": Side("tracectl_selfcheck_kubernetes", "kpo"),
}


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

    def __init__(self, env: dict[str, str]) -> None:
        from controller.loopback import free_port

        self.home = Path(tempfile.mkdtemp(prefix="tracectl-bench-af-"))
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "controller.cli.main", "server", "--home", str(self.home)]
        argv += ["--port", self.url.rsplit(":", 1)[1]]
        log = (self.home / "server.log").open("w")
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            env={**os.environ, **env},
            start_new_session=True,
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
    def __init__(self, env: dict[str, str], dag_id: str) -> None:
        self.dag_id = dag_id
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
        path = f"/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/{key}"
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
        while self.http.get(f"/dags/{self.dag_id}").status_code != 200:
            assert time.monotonic() < deadline, f"{self.dag_id} not parsed"
            time.sleep(2)
        self.ok("PATCH", f"/dags/{self.dag_id}", json={"is_paused": False})

    def run(self, conf: dict[str, Any]) -> str:
        body = {"logical_date": None, "conf": conf}
        run_id = str(self.ok("POST", f"/dags/{self.dag_id}/dagRuns", json=body)["dag_run_id"])
        deadline = time.monotonic() + 600
        while self.ok("GET", f"/dags/{self.dag_id}/dagRuns/{run_id}")["state"] not in (
            "success",
            "failed",
        ):
            assert time.monotonic() < deadline, f"{run_id} did not end"
            time.sleep(1)
        return run_id

    def ti(self, run_id: str, task: str) -> Any:
        return self.ok("GET", f"/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{task}")

    def log(self, run_id: str, task: str, try_number: int) -> list[tuple[float | None, str]]:
        """The task instance's Airflow log: (timestamp, message) per line."""
        path = f"/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{task}/logs/{try_number}"
        body = self.ok("GET", path, params={"full_content": "true"})
        return [
            (at(e["timestamp"]) if e.get("timestamp") else None, str(e.get("event", "")))
            for e in body["content"]
        ]


def log_marks(log: list[tuple[float | None, str]]) -> dict[str, float]:
    """When the worker was done with Airflow's pre-execute (its start and the DAG file's parse:
    the same for every operator) and, for a tracectl task, when the operator had submitted."""
    marks: dict[str, float] = {}
    in_pre = False
    for when, message in log:
        if when is None:
            continue
        if message.startswith("::group::Pre Execute"):
            in_pre = True
        elif in_pre and message.startswith("::endgroup::"):
            marks.setdefault("parsed", when)
            in_pre = False
        elif message.startswith("submitted tracectl task"):
            marks.setdefault("submitted", when)
    return marks


def stamps(text: str) -> tuple[float, float]:
    """The command's own start and end: the last pair of epoch stamps in TEXT."""
    found = STAMPS.findall(str(text))
    assert found, f"no start/end stamps in {str(text)[-300:]!r}"
    first, last = found[-1]
    return float(first), float(last)


class Cluster:
    """The real node's side (bench/dispatch_real.py's set-up): a fresh watched namespace, the
    runtime image by digest, the controller's Kubernetes settings and the KPO's parameters."""

    def __init__(self, image: str | None) -> None:
        from bench.dispatch_real import NODE, clocked_namespace, runtime_image

        self.image = runtime_image(image)
        self.api, self.kubeconfig, self.namespace, self.clock = clocked_namespace("bench-af")
        self.node = ",".join(f"{k}={v}" for k, v in NODE.items())

    def controller_env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": self.kubeconfig,
            "TRACECTL_EXECUTOR": "kubernetes",
            "TRACECTL_K8S_NAMESPACE": self.namespace,
            "TRACECTL_K8S_IMAGE": self.image,
            "TRACECTL_K8S_NODE_SELECTOR": self.node,
            "TRACECTL_K8S_HOST_NETWORK": "1",
        }

    def conf(self) -> dict[str, str]:
        return {"image": self.image, "namespace": self.namespace, "kubeconfig": self.kubeconfig}

    def close(self) -> None:
        from kubernetes import client

        client.CoreV1Api(self.api).delete_namespace(self.namespace)


@dataclass
class Bench:
    airflow: Airflow
    controller: Controller
    side: Side
    cluster: Cluster | None


def measure(bench: Bench, run_id: str) -> dict[str, Any]:
    return {mode: measure_task(bench, run_id, mode) for mode in bench.side.modes}


def measure_task(bench: Bench, run_id: str, mode: str) -> dict[str, Any]:
    airflow = bench.airflow
    ti = airflow.ti(run_id, mode)
    row: dict[str, Any] = {"state": ti["state"]}
    start, end = at(ti["start_date"]), at(ti["end_date"])
    pod: str | None = None
    log = airflow.log(run_id, mode, int(ti["try_number"]))
    marks = log_marks(log)
    row["ti_start_to_parsed_s"] = marks["parsed"] - start
    if mode == "bash":
        first, last = stamps(airflow.xcom(run_id, mode, "return_value"))
    elif mode == "kpo":  # the pod's lines are in the task's Airflow log
        first, last = stamps("\n".join(message for _, message in log))
        pod = str(airflow.xcom(run_id, mode, "pod_name"))
    else:
        row["parsed_to_submitted_s"] = marks["submitted"] - marks["parsed"]
        first, last, pod = controller_split(bench, run_id, mode, end, row)
    if pod and bench.cluster is not None:
        running, succeeded = bench.cluster.clock.wait(pod, 60)
        row["ti_start_to_pod_running_s"] = running - start
        row["pod_running_to_command_s"] = first - running  # container start, tracectl's prepare
        row["command_to_pod_succeeded_s"] = succeeded - last
        row["pod_succeeded_to_ti_end_s"] = end - succeeded
    row["duration_s"] = end - start
    row["command_s"] = last - first
    row["overhead_s"] = end - start - (last - first)
    return row


def controller_split(
    bench: Bench, run_id: str, mode: str, ti_end: float, row: dict[str, Any]
) -> tuple[float, float, str | None]:
    """The command's stamps from the tracectl task's log, the controller's own split into ROW,
    and its Job's name (the pod's job-name) on Kubernetes."""
    airflow, controller = bench.airflow, bench.controller
    task = controller.get(f"/v1/tasks/{airflow.xcom(run_id, mode, 'tracectl_task_id')}")
    lines = controller.get(f"/v1/tasks/{task['id']}/logs", limit=1000)["items"]
    first, last = stamps("\n".join(ln["message"] for ln in lines if ln["stream"] == "stdout"))
    finished = at(task["finished_at"])
    row["submit_to_first_s"] = first - at(task["created_at"])
    row["last_to_finished_s"] = finished - last
    if mode == "deferred":
        fired = float(airflow.xcom(run_id, mode, "trigger_fired_at"))
        row["trigger_fired_after_end_s"] = fired - finished
    row["finished_to_ti_end_s"] = ti_end - finished
    ref = task.get("executor_ref") or {}
    return first, last, ref.get("name") if ref.get("kind") == "k8s" else None


def summary(samples: list[dict[str, Any]], modes: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in modes:
        keys = [k for k in samples[0][mode] if k.endswith("_s")]
        out[mode] = {
            key: {
                "p50": round(statistics.median(s[mode][key] for s in samples), 3),
                "max": round(max(s[mode][key] for s in samples), 3),
            }
            for key in keys
        }
    return out


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=2.0, help="the command's own seconds")
    parser.add_argument("--executor", choices=sorted(SIDES), default="local")
    parser.add_argument("--image", help="kubernetes: the image (default: build/push it now)")
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def main() -> int:
    args = arguments()
    side = SIDES[args.executor]
    airflow = Airflow(airflow_env(), side.dag_id)
    cluster = Cluster(args.image) if args.executor == "kubernetes" else None
    controller = Controller(cluster.controller_env() if cluster else {})
    bench = Bench(airflow, controller, side, cluster)
    conf: dict[str, Any] = {"command": command(args.sleep), **(cluster.conf() if cluster else {})}
    try:
        airflow.use(controller.url)
        load_before = load()
        cold = measure(bench, airflow.run(conf))
        samples = [measure(bench, airflow.run(conf)) for _ in range(args.runs)]
    finally:
        controller.stop()
        if cluster is not None:
            cluster.close()
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "executor": args.executor,
        "image": cluster.image if cluster else None,
        "task_command": shlex.join(command(args.sleep)),
        "summary": summary(samples, side.modes),
        "runs": samples,
        "cold": cold,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    ok = all(s[m]["state"] == "success" for s in [cold, *samples] for m in side.modes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
