"""Dispatch latency: from the call that starts a task to its object being visible in a watch.

    python bench/dispatch.py                       # tracectl, the Airflow peer, the controller
    python bench/dispatch.py --tasks 100 --burst 50 \
        --peer-python ~/.cache/tracectl/bench-kpo/venv/bin/python
    python bench/dispatch.py --side controller     # only POST /v1/runs/{id}/tasks -> Job

Against the real kube-apiserver of deploy/local/kubernetes (KUBECONFIG from its `env`).

controller: a real controller (bench/dispatch_path.py: API, SQLite store, supervisor, MLflow
           tracking, KubernetesExecutor) in its own process; submitters POST tasks over HTTP
           and the latency runs from the POST to the Job ADDED in this process's watch, with
           the controller's own timestamps along the path (`stages`: handler, store commit,
           supervisor wake-up and admission, Job create, MLflow run, Secret, RUNNING).
tracectl:  KubernetesExecutor.launch(Launch) -> Job ADDED in a watch. launch() builds the
           Job (typed builders), POSTs it serialized in one pass, then the Secret owned by it.
peer:      Airflow's KubernetesPodOperator (apache-airflow-providers-cncf-kubernetes, its own
           venv): a fresh operator per task, as each Airflow task runs one, then
           build_pod_request_obj() + pod_manager.create_pod() -> Pod ADDED in a watch.
           "warm" reuses one operator (hook and client cached): its fastest possible path.

Both sides time the same interval with the same clock (time.perf_counter in one process),
with 1 submitter and with N concurrent submitters (threads), and the same argv, env, image
and resources. To keep KWOK and the scheduler out of the measurement, tracectl's Jobs are
created for a Kueue queue (so they start suspended and make no pods) and the peer's pods
select a node that does not exist (so nothing runs them): each side creates its object and
nothing follows. Two more figures put the latency in context: `floor_post_only`, the same
Job body built once and POSTed alone (what the API server itself costs), and
`client_overhead`, the work each side does before its first byte is sent (no network):
tracectl builds the Job, serializes it and makes the request line and headers (the Secret
follows the Job); the peer builds an operator, its hook and client (cold) and its pod
request, and serializes it (its client also makes the request line after that). The JSON
on stdout carries the figures, the ratios and the command line.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import stats
from bench.machine import load, machine

REPO = Path(__file__).resolve().parents[1]
ARGV = ["python", "train.py", "--epochs", "3"]
ENV = {
    "EPOCHS": "3",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MLFLOW_RUN_ID": "abc123",
    "TRACECTL_FENCING_TOKEN": "42",
}
IMAGE = "registry.invalid/tracectl/task:1"
RUNTIME_IMAGE = "registry.invalid/tracectl/runtime@sha256:" + "0" * 64  # KWOK pulls nothing
DEFAULT_PEER = Path.home() / ".cache/tracectl/bench-kpo/venv/bin/python"
UNIQUE = itertools.count(1)  # every start gets a new task: a reused name would be adopted
# Wall clock: the controller path compares stamps taken in the controller's process with the
# bench's own (time.perf_counter is per process); resolution is far below a millisecond.
CLOCK = time.time


# -- shared: a raw watch that stamps when each object is first seen -----------------------
class Seen:
    def __init__(self, list_fn: Callable[..., Any], namespace: str, selector: str) -> None:
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()
        self.ready = threading.Event()
        self._stop = False
        self._args = (list_fn, namespace, selector)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        list_fn, namespace, selector = self._args
        version = json.loads(
            list_fn(namespace, label_selector=selector, _preload_content=False).data
        )["metadata"]["resourceVersion"]
        while not self._stop:
            response = list_fn(
                namespace,
                label_selector=selector,
                watch=True,
                resource_version=version,
                timeout_seconds=300,
                allow_watch_bookmarks=True,
                _preload_content=False,
            )
            self.ready.set()
            for line in iter_resp_lines(response):
                now = CLOCK()
                event = json.loads(line)
                meta = event["object"]["metadata"]
                version = meta.get("resourceVersion", version)
                if event["type"] == "ADDED":
                    with self.cond:
                        self.at.setdefault(meta["name"], now)
                        self.cond.notify_all()

    def wait(self, name: str, timeout: float = 30) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.at, timeout):
                raise TimeoutError(f"{name} never appeared in the watch")
            return self.at[name]


def run_load(start: Callable[[int], str], seen: Seen, tasks: int, submitters: int) -> list[float]:
    """`tasks` starts per submitter; returns the latencies in ms (call -> seen)."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(submitters)
    errors: list[BaseException] = []

    def submitter(worker: int) -> None:
        barrier.wait()
        for _ in range(tasks):
            t0 = CLOCK()
            try:
                name = start(next(UNIQUE))
                t1 = seen.wait(name)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                latencies.append((t1 - t0) * 1000)

    threads = [threading.Thread(target=submitter, args=(w,)) for w in range(submitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies


def client_overhead(prepare: Callable[[int], None], n: int = 200) -> dict[str, Any]:
    """Client-side work before the request is sent, in ms (no network), n times in a row."""
    prepare(0)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        prepare(i + 1)
        times.append((time.perf_counter() - t0) * 1000)
    return summary(times)


def summary(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"n": 0}
    mean = round(statistics.fmean(latencies), 2)
    return {**stats.summary(latencies, (0.5, 0.9, 0.99)), "mean_ms": mean}


def api_client(kubeconfig: str) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 64
    return client.ApiClient(cfg)


def ensure_namespace(api: Any, name: str) -> None:
    from kubernetes import client

    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise


# -- tracectl ------------------------------------------------------------------------------
def bench_tracectl(kubeconfig: str, namespace: str, tasks: int, burst: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from kubernetes import client

    from controller.config import ClusterConfig, Settings
    from controller.executors.k8s_manifests import MANAGED_SELECTOR
    from controller.executors.kubernetes import JOBS, KubernetesExecutor
    from controller.ports import Launch

    home = Path(tempfile.mkdtemp(prefix="tracectl-bench-"))
    cluster = ClusterConfig(
        namespace=namespace,
        image=RUNTIME_IMAGE,
        kubeconfig=kubeconfig,
        queue="bench",
        follow_logs=False,
    )
    executor = KubernetesExecutor(Settings(home=home), cluster, api_client(kubeconfig))
    prefix = uuid.uuid4().hex[:8]

    def start(i: int) -> str:
        task_id = f"task_{prefix}{i:014d}"
        launch = Launch(bench_document(task_id, home), home / task_id)
        return executor.launch(launch).name

    batch = client.BatchV1Api(executor.api)
    seen = Seen(batch.list_namespaced_job, namespace, MANAGED_SELECTOR)
    start(0)  # warm: namespace check, informers, connection pool
    single = run_load(start, seen, tasks, 1)
    concurrent = run_load(start, seen, max(1, tasks * 2 // burst) or 1, burst)
    executor.close()
    # The floor: the same Job body, built once, POSTed alone (no Secret, no building).
    body = executor.api.sanitize_for_serialization(job_manifest(executor.cluster, home, "floor"))

    def post_only(i: int) -> str:
        name = f"floor-{prefix}-{i}"
        batch.create_namespaced_job(
            namespace,
            {**body, "metadata": {**body["metadata"], "name": name}},
            _preload_content=False,
        )
        return name

    from controller.executors import k8s_manifests

    def prepare_only(i: int) -> None:  # what launch() does before the Job's first byte
        doc = bench_document(f"task_p{i}", home)
        name = k8s_manifests.object_name(doc.task_id, 1)
        k8s_manifests.to_json(k8s_manifests.job(doc, executor.cluster, name))
        executor.api.param_serialize(  # the request line and headers, as _create makes them
            "POST",
            JOBS,
            path_params={"namespace": namespace},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )

    return {
        "side": "tracectl",
        "path": "KubernetesExecutor.launch -> Job ADDED (watch)",
        "single": summary(single),
        "concurrent": summary(concurrent),
        "client_overhead": client_overhead(prepare_only),
        "floor_post_only": {
            "single": summary(run_load(post_only, seen, tasks, 1)),
            "concurrent": summary(run_load(post_only, seen, max(1, tasks * 2 // burst), burst)),
        },
    }


# -- the controller path: POST /v1/runs/{id}/tasks -> Job ADDED ----------------------------
STAGES = [
    ("post", "api_in", "request reaches the handler"),
    ("api_in", "committed", "validate + insert the task (store commit)"),
    ("committed", "api_out", "handler returns (status event, read back)"),
    ("api_out", "response", "response serialized and received"),
    ("committed", "picked", "supervisor wakes up, admits (store commit), launch thread"),
    ("picked", "create", "launch document read from the store"),
    ("create", "watched", "Job created in the API server and seen by a watch"),
    ("create", "tracking", "Job created, then the MLflow run of the attempt"),
    ("tracking", "created", "launch file and launch Secret written"),
    ("created", "running", "RUNNING + Job reference committed"),
]


def bench_controller(kubeconfig: str, namespace: str, tasks: int, burst: int) -> dict[str, Any]:
    """A real controller (bench/dispatch_path.py serve) in its own process; submitters POST
    tasks over HTTP; latency = POST sent -> the Job ADDED in this process's watch."""
    import httpx

    sys.path.insert(0, str(REPO))
    from kubernetes import client

    from controller.executors.k8s_manifests import MANAGED_SELECTOR, object_name
    from controller.server import free_port

    home = Path(tempfile.mkdtemp(prefix="tracectl-bench-ctl-"))
    port, stamps_file = free_port(), home / "stamps.json"
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "TRACECTL_K8S_NAMESPACE": namespace,
        "TRACECTL_K8S_QUEUE": "bench",
        "TRACECTL_K8S_FOLLOW_LOGS": "0",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench/dispatch_path.py"),
            "serve",
            "--home",
            str(home),
            "--port",
            str(port),
            "--stamps",
            str(stamps_file),
        ],
        env=env,
        stdout=(home / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=burst + 4))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the controller did not start; see {home / 'server.log'}")
            time.sleep(0.2)
        client_stamps: dict[str, dict[str, float]] = {}
        lock = threading.Lock()

        def new_run() -> str:
            answer = http.post("/v1/runs", json={"pipeline": "bench"})
            answer.raise_for_status()
            return str(answer.json()["id"])

        runs = threading.local()  # a run per submitter thread, as one DAG run per worker

        def start(i: int) -> str:
            if not hasattr(runs, "id"):
                runs.id = new_run()
            t0 = CLOCK()
            answer = http.post(
                f"/v1/runs/{runs.id}/tasks",
                json={
                    "name": f"train-{i}",
                    "spec": {
                        "command": ARGV,
                        "image": IMAGE,
                        "env": {"EPOCHS": "3"},
                        "resources": {"cpu": 1, "memory": "1Gi"},
                    },
                },
            )
            t1 = CLOCK()
            answer.raise_for_status()
            task_id = str(answer.json()["id"])
            with lock:
                client_stamps[task_id] = {"post": t0, "response": t1}
            return object_name(task_id, 1)

        seen = Seen(
            client.BatchV1Api(api_client(kubeconfig)).list_namespaced_job,
            namespace,
            MANAGED_SELECTOR,
        )
        start(0)  # warm: namespace, informers, connection pools, MLflow experiment
        warm_id = next(iter(client_stamps))
        seen.wait(object_name(warm_id, 1))
        while http.get(f"/v1/tasks/{warm_id}").json()["status"] != "running":
            time.sleep(0.05)  # its MLflow run (first import, experiment) comes after the Job
        loads = {}
        for load, (count, submitters) in (
            ("single", (tasks, 1)),
            ("concurrent", (max(1, tasks * 2 // burst), burst)),
        ):
            before = set(client_stamps)
            latencies = run_load(start, seen, count, submitters)
            loads[load] = (latencies, set(client_stamps) - before)

        def settled(i: int) -> str:
            """Start a task once the previous one is RUNNING (its MLflow run and Secret made):
            one submitter that never finds the controller still busy with its last task."""
            last = list(client_stamps)[-1]
            while http.get(f"/v1/tasks/{last}").json()["status"] != "running":
                time.sleep(0.005)
            return start(i)

        before = set(client_stamps)
        latencies = []
        for _ in range(tasks):
            name = settled(next(UNIQUE))  # the wait is outside the timed interval
            task_id = list(client_stamps)[-1]
            latencies.append((seen.wait(name) - client_stamps[task_id]["post"]) * 1000)
        loads["single_settled"] = (latencies, set(client_stamps) - before)
    finally:
        http.close()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    server_stamps = json.loads(stamps_file.read_text()) if stamps_file.exists() else {}
    result: dict[str, Any] = {
        "side": "tracectl controller",
        "path": "POST /v1/runs/{id}/tasks -> Job ADDED (watch)",
    }
    if "_cpu_s" in server_stamps:  # load-independent: what one dispatch costs the controller
        result["controller_cpu_ms_per_task"] = round(
            server_stamps.pop("_cpu_s") * 1000 / max(1, len(client_stamps)), 2
        )
    for load, (latencies, ids) in loads.items():
        rows = []
        for task_id in ids:
            row = {**server_stamps.get(task_id, {}), **client_stamps[task_id]}
            name = object_name(task_id, 1)
            if name in seen.at:
                row["watched"] = seen.at[name]
            rows.append(row)
        result[load] = {
            "end_to_end": summary(latencies),
            "api_only": summary([(r["response"] - r["post"]) * 1000 for r in rows]),
            "stages": {
                f"{a} -> {b}": {
                    "what": what,
                    **summary([(r[b] - r[a]) * 1000 for r in rows if a in r and b in r]),
                }
                for a, b, what in STAGES
            },
        }
    return result


def job_manifest(cluster: Any, home: Path, name: str) -> Any:
    from controller.executors import k8s_manifests

    return k8s_manifests.job(bench_document("task_floor", home), cluster, name)


def bench_document(task_id: str, home: Path) -> Any:
    """The launch document of one benchmark attempt."""
    from controller.domain.launch import LaunchDocument, LaunchLabels, RuntimeSettings
    from controller.domain.spec import TaskSpec

    spec = TaskSpec.model_validate(
        {
            "command": ARGV,
            "image": IMAGE,
            "env": {"EPOCHS": "3"},
            "resources": {"cpu": 1, "memory": "1Gi"},
        }
    )
    return LaunchDocument(
        run_id="run_bench",
        task_id=task_id,
        task_name="train",
        attempt=1,
        spec=spec,
        env=ENV,
        labels=LaunchLabels(team="bench"),
        runtime=RuntimeSettings(home=home, cancel_grace_s=5),
    )


# -- the Airflow peer (runs in the provider's venv) ---------------------------------------
def bench_peer(kubeconfig: str, namespace: str, tasks: int, burst: int) -> dict[str, Any]:
    import logging

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes import client
    from kubernetes.client import models as k8s

    logging.disable(logging.WARNING)
    prefix = uuid.uuid4().hex[:8]
    selector = "tracectl.io/bench=kpo"

    def operator(i: int) -> Any:
        return KubernetesPodOperator(
            task_id=f"train_{i}",
            name=f"kpo-{prefix}-{i}",
            namespace=namespace,
            image=IMAGE,
            cmds=ARGV[:1],
            arguments=ARGV[1:],
            env_vars={**ENV, "EPOCHS": "3"},
            container_resources=k8s.V1ResourceRequirements(
                requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi"}
            ),
            labels={"tracectl.io/bench": "kpo"},
            node_selector={"tracectl.io/bench": "no-such-node"},
            config_file=kubeconfig,
            in_cluster=False,
            random_name_suffix=True,
            reattach_on_restart=False,
            get_logs=False,
        )

    def start_cold(i: int) -> str:
        op = operator(i)  # what each Airflow task instance does: its own operator and hook
        pod = op.build_pod_request_obj()
        op.pod_manager.create_pod(pod=pod)
        return str(pod.metadata.name)

    warm_op = operator(0)

    def start_warm(i: int) -> str:
        pod = warm_op.build_pod_request_obj()
        warm_op.pod_manager.create_pod(pod=pod)
        return str(pod.metadata.name)

    def prepare_cold(i: int) -> None:  # before its first byte is sent, per Airflow task
        op = operator(i)
        pod = op.build_pod_request_obj()
        op.client.api_client.sanitize_for_serialization(pod)

    def prepare_warm(i: int) -> None:
        warm_op.client.api_client.sanitize_for_serialization(warm_op.build_pod_request_obj())

    core = client.CoreV1Api(api_client(kubeconfig))
    seen = Seen(core.list_namespaced_pod, namespace, selector)
    start_warm(0)
    result: dict[str, Any] = {
        "side": "airflow KubernetesPodOperator",
        "path": "KPO(...) + build_pod_request_obj + pod_manager.create_pod -> Pod ADDED (watch)",
        "client_overhead": {
            "cold": client_overhead(prepare_cold),
            "warm": client_overhead(prepare_warm),
        },
    }
    for label, start in (("cold", start_cold), ("warm", start_warm)):
        result[label] = {
            "single": summary(run_load(start, seen, tasks, 1)),
            "concurrent": summary(run_load(start, seen, max(1, tasks * 2 // burst), burst)),
        }
    from importlib.metadata import version

    result["versions"] = {
        "apache-airflow-providers-cncf-kubernetes": version(
            "apache-airflow-providers-cncf-kubernetes"
        ),
        "apache-airflow": version("apache-airflow"),
        "kubernetes": version("kubernetes"),
    }
    return result


def kubeconfig_from_stack() -> str:
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    out = subprocess.run(
        [str(REPO / "deploy/local/kubernetes"), "env"], capture_output=True, text=True, check=True
    ).stdout
    return next(
        line.split("=", 1)[1] for line in out.splitlines() if line.startswith("KUBECONFIG=")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="starts by the single submitter")
    parser.add_argument("--burst", type=int, default=50, help="concurrent submitters")
    parser.add_argument(
        "--peer-python",
        default=str(DEFAULT_PEER),
        help="python of the venv with apache-airflow-providers-cncf-kubernetes",
    )
    parser.add_argument(
        "--side",
        choices=["both", "tracectl", "peer", "controller"],
        default="both",
        help="controller: only the POST -> Job path",
    )
    parser.add_argument("--namespace", default=f"bench-{uuid.uuid4().hex[:6]}")
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    args = parser.parse_args()
    # The measuring process must not pause: a full collection here (100+ ms) landed in the
    # middle of a timed start and was counted as the controller's (or the peer's) latency.
    # Each side's own process keeps its collector; the bench's is off, on both sides alike.
    gc.disable()
    load_at_start = load()
    kubeconfig = kubeconfig_from_stack()
    api = api_client(kubeconfig)
    if args.side == "peer":
        print(json.dumps(bench_peer(kubeconfig, args.namespace, args.tasks, args.burst)))
        return 0
    ensure_namespace(api, args.namespace)
    try:
        if args.side == "controller":
            print(
                json.dumps(
                    bench_controller(kubeconfig, args.namespace, args.tasks, args.burst), indent=2
                )
            )
            return 0
        ours = bench_tracectl(kubeconfig, args.namespace, args.tasks, args.burst)
        report: dict[str, Any] = {
            "command": " ".join([sys.executable, *sys.argv]),
            "machine": machine(load_at_start),
            "concurrent_submitters": args.burst,
            "tracectl": ours,
        }
        if args.side == "both":
            out = subprocess.run(
                [
                    args.peer_python,
                    __file__,
                    "--side",
                    "peer",
                    "--namespace",
                    args.namespace,
                    "--tasks",
                    str(args.tasks),
                    "--burst",
                    str(args.burst),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "KUBECONFIG": kubeconfig},
                check=False,
            )
            if out.returncode != 0:
                raise SystemExit(f"the peer failed:\n{out.stderr[-3000:]}")
            peer = json.loads(out.stdout.strip().splitlines()[-1])
            report["peer"] = peer
            report["ratio_peer_over_tracectl"] = {
                f"{mode}_{load}_p50": round(peer[mode][load]["p50_ms"] / ours[load]["p50_ms"], 2)
                for mode in ("cold", "warm")
                for load in ("single", "concurrent")
            }
            report["ratio_peer_over_tracectl"].update(
                {
                    f"{mode}_{load}_p99": round(
                        peer[mode][load]["p99_ms"] / ours[load]["p99_ms"], 2
                    )
                    for mode in ("cold", "warm")
                    for load in ("single", "concurrent")
                }
            )
            # The whole controller path (HTTP, store, supervisor, MLflow run, Job) against
            # the peer's operator -> Pod path.
            report["controller"] = ctl = bench_controller(
                kubeconfig, args.namespace, args.tasks, args.burst
            )
            report["ratio_peer_over_controller"] = {
                f"{mode}_{load}_{p}": round(
                    peer[mode][load][f"{p}_ms"] / ctl[load]["end_to_end"][f"{p}_ms"], 2
                )
                for mode in ("cold", "warm")
                for load in ("single", "concurrent")
                for p in ("p50", "p99")
            }
        if args.side == "both":
            report["ratio_client_overhead_peer_over_tracectl"] = {
                f"{mode}_p50": round(
                    peer["client_overhead"][mode]["p50_ms"] / ours["client_overhead"]["p50_ms"], 1
                )
                for mode in ("cold", "warm")
            }
        report["targets"] = {
            "p99_under_50ms": {load: ours[load]["p99_ms"] < 50 for load in ("single", "concurrent")}
        }
        if "controller" in report:
            report["targets"]["controller_p99_under_50ms"] = {
                load: report["controller"][load]["end_to_end"]["p99_ms"] < 50
                for load in ("single", "single_settled", "concurrent")
            }
        print(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            from kubernetes import client

            client.CoreV1Api(api).delete_namespace(args.namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
