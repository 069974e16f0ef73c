"""Real-pod dispatch: Job created -> container running -> succeeded, on the real node.

    python bench/dispatch_real.py --tasks 30       # needs deploy/local/kubernetes + registry

Three sides run the same image (the runtime image `tracectl image build` pushes) and the same
argv (`python3 -c pass`) on the real node `localhost` (kubelet + containerd + runc), one task at
a time:
  bare      a Job of one container with the argv alone: what Kubernetes itself takes;
  tracectl  KubernetesExecutor.launch(): its Job's one container runs
            `python -m controller.runtime.phases all` (prepare, then the argv, then the result);
            done = the executor's inspect() (its watch cache) says the attempt exited;
  kpo       Airflow's KubernetesPodOperator (apache-airflow-providers-cncf-kubernetes in the
            venv of deploy/local/airflow; bench/dispatch_kpo.py): a fresh operator per task and
            its execute() (create, await start, logs, await completion, delete); done = it returned.
A watch on pods (started before the first task) stamps when each pod is first seen Running and
Succeeded; every figure runs from just before the create call, on the wall clock (the KPO runs
in its own process). Orchestration overhead = time to done minus the bare Job's p50 to
succeeded (what Kubernetes needs to run this container at all). The JSON on stdout carries the
figures, the load average before and after each side, and the command line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AIRFLOW_PYTHON = Path.home() / ".cache/tracectl/airflow/venv/bin/python"

from bench import stats  # noqa: E402
from bench.machine import load, machine  # noqa: E402

ARGV = ["python3", "-c", "pass"]
NODE = {"kubernetes.io/hostname": "localhost"}
REGISTRY = "127.0.0.1:5001"  # deploy/local/registry


class PodClock:
    """First time each job-name's pod (or bare pod, by name) is seen Running / Succeeded."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self._stop = False
        threading.Thread(target=self._watch, args=(api, namespace), daemon=True).start()

    def _watch(self, api: Any, namespace: str) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(api)
        while not self._stop:
            for event in watch.Watch().stream(
                core.list_namespaced_pod, namespace, timeout_seconds=60
            ):
                pod = event["object"]
                # a Job's pod by its Job's name, a bare pod (KubernetesPodOperator's) by its own
                job = (pod.metadata.labels or {}).get("job-name") or pod.metadata.name
                phase = pod.status.phase
                if job and phase in ("Running", "Succeeded", "Failed"):
                    with self.cond:
                        self.seen.setdefault((job, phase), time.time())
                        if phase == "Succeeded":  # a pod seen only Succeeded was Running too
                            self.seen.setdefault((job, "Running"), self.seen[(job, phase)])
                        self.cond.notify_all()

    def wait(self, job: str, timeout: float = 300) -> tuple[float, float]:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: (job, "Succeeded") in self.seen or (job, "Failed") in self.seen, timeout
            )
            if not ok or (job, "Failed") in self.seen:
                raise RuntimeError(f"Job {job} did not succeed")
            return self.seen[(job, "Running")], self.seen[(job, "Succeeded")]


def clocked_namespace(prefix: str) -> tuple[Any, str, str, PodClock]:
    """A new namespace PREFIX-<hex> on deploy/local's cluster, watched by a pod clock that is
    open before the first create: (API client, kubeconfig, namespace, clock)."""
    from kubernetes import client, config

    from bench.dispatch import kubeconfig_from_stack

    kubeconfig = kubeconfig_from_stack()
    api = config.new_client_from_config(config_file=kubeconfig)
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    clock = PodClock(api, namespace)
    time.sleep(1)  # the watch is open before the first create
    return api, kubeconfig, namespace, clock


def runtime_image(image: str | None) -> str:
    """IMAGE, or the runtime image `tracectl image build` pushes to deploy/local/registry now
    (cached: a build with nothing changed only resolves its digest), by digest."""
    from controller.images.build import BuildRequest, build

    cache = Path.home() / ".cache/tracectl/images"
    return image or build(BuildRequest(registry=REGISTRY, source=REPO, cache=cache)).reference


def summary(values: list[float]) -> dict[str, Any]:
    mean = round(statistics.fmean(values), 1)
    return {**stats.summary(values, (0.5, 0.95, 0.99), digits=1), "mean_ms": mean}


def bare_job(name: str, image: str) -> Any:
    from kubernetes import client

    container = client.V1Container(name="task", image=image, command=ARGV)
    spec = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        node_selector=NODE,
        host_network=True,
        automount_service_account_token=False,
        enable_service_links=False,
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=spec)),
    )


def run_bare(api: Any, namespace: str, clock: PodClock, image: str, tasks: int) -> dict[str, Any]:
    from kubernetes import client

    batch = client.BatchV1Api(api)
    running, done = [], []
    for i in range(tasks):
        name = f"bare-{i}-{uuid.uuid4().hex[:4]}"
        t0 = time.time()
        batch.create_namespaced_job(namespace, bare_job(name, image))
        r, s = clock.wait(name)
        running.append((r - t0) * 1000)
        done.append((s - t0) * 1000)
    return sides(running, done, done)


def sides(running: list[float], succeeded: list[float], done: list[float]) -> dict[str, Any]:
    return {
        "to_running": summary(running),
        "to_succeeded": summary(succeeded),
        "to_done": summary(done),
        "load_after": load(),
    }


def run_tracectl(
    api: Any, kubeconfig: str, namespace: str, clock: PodClock, image: str, tasks: int, home: Path
) -> dict[str, Any]:
    from controller.config import ClusterConfig, Settings
    from controller.domain.launch import LaunchDocument, LaunchLabels, RuntimeSettings
    from controller.domain.spec import TaskSpec
    from controller.executors.kubernetes import KubernetesExecutor
    from controller.ports import Launch

    cluster = ClusterConfig(
        namespace=namespace,
        image=image,
        kubeconfig=kubeconfig,
        node_selector=NODE,
        host_network=True,
        follow_logs=False,
    )
    executor = KubernetesExecutor(Settings(home=home), cluster)
    running: list[float] = []
    succeeded: list[float] = []
    done: list[float] = []
    try:
        for _ in range(tasks):
            task_id = f"task_{uuid.uuid4().hex[:22]}"
            doc = LaunchDocument(
                run_id="run_bench",
                task_id=task_id,
                task_name="t",
                attempt=1,
                spec=TaskSpec.model_validate({"command": ARGV, "image": image}),
                env={},
                labels=LaunchLabels(team="bench"),
                runtime=RuntimeSettings(home=home, cancel_grace_s=5),
            )
            t0 = time.time()
            ref = executor.launch(Launch(doc, home / task_id))
            while executor.inspect(ref, home / task_id).phase != "exited":  # its watch cache
                time.sleep(0.005)
            ended = time.time()
            r, s = clock.wait(ref.name)
            running.append((r - t0) * 1000)
            succeeded.append((s - t0) * 1000)
            done.append((ended - t0) * 1000)
    finally:
        executor.close()
    return sides(running, succeeded, done)


def run_kpo(
    kubeconfig: str, namespace: str, clock: PodClock, image: str, tasks: int, python: Path
) -> dict[str, Any]:
    """bench/dispatch_kpo.py in Airflow's venv; its pods are stamped by this process's watch."""
    argv = [str(python), str(REPO / "bench/dispatch_kpo.py"), kubeconfig, namespace, image]
    out = subprocess.run([*argv, str(tasks)], capture_output=True, text=True, check=True)
    running, succeeded, done = [], [], []
    for line in out.stdout.splitlines():
        if not line.startswith("dispatch_kpo: "):
            continue  # Airflow's own log lines
        task = json.loads(line.removeprefix("dispatch_kpo: "))
        r, s = clock.wait(task["job"])
        running.append((r - task["t0"]) * 1000)
        succeeded.append((s - task["t0"]) * 1000)
        done.append((task["done"] - task["t0"]) * 1000)
    result = sides(running, succeeded, done)
    versions = subprocess.run(
        [str(python), "-c", VERSIONS], capture_output=True, text=True, check=True
    ).stdout
    return {**result, "versions": json.loads(versions)}


VERSIONS = """import json
from importlib.metadata import version
names = ("apache-airflow", "apache-airflow-providers-cncf-kubernetes", "kubernetes")
print(json.dumps({name: version(name) for name in names}))"""


def overheads(bare: dict[str, Any], ours: dict[str, Any], kpo: dict[str, Any] | None) -> Any:
    """Time to done beyond the bare Job's p50 to succeeded, p50 and p95, and the ratios."""
    floor = bare["to_succeeded"]["p50_ms"]
    figures: dict[str, Any] = {"bare_job_p50_succeeded_ms": floor}
    for name, side in (("tracectl", ours), ("kpo", kpo)):
        if side is not None:
            figures[name] = {
                p: round(side["to_done"][f"{p}_ms"] - floor, 1) for p in ("p50", "p95")
            }
    figures["tracectl_over_bare_p50_succeeded"] = round(ours["to_succeeded"]["p50_ms"] / floor, 3)
    if kpo is not None:
        figures["kpo_over_tracectl_overhead_p50"] = round(
            figures["kpo"]["p50"] / max(figures["tracectl"]["p50"], 1.0), 2
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--image", help="default: build/push the runtime image now")
    parser.add_argument(
        "--airflow-python",
        type=Path,
        default=AIRFLOW_PYTHON,
        help="the interpreter of deploy/local/airflow's venv (KPO side); --no-kpo to skip",
    )
    parser.add_argument("--no-kpo", action="store_true")
    args = parser.parse_args()
    from kubernetes import client

    image = runtime_image(args.image)
    api, kubeconfig, namespace, clock = clocked_namespace("bench-real")
    core = client.CoreV1Api(api)
    home = Path(f"/tmp/{namespace}")
    load_before = load()
    kpo = None
    try:
        bare = run_bare(api, namespace, clock, image, args.tasks)
        ours = run_tracectl(api, kubeconfig, namespace, clock, image, args.tasks, home)
        if not args.no_kpo:
            kpo = run_kpo(kubeconfig, namespace, clock, image, args.tasks, args.airflow_python)
    finally:
        core.delete_namespace(namespace)
    print(
        json.dumps(
            {
                "command": " ".join(["python", *sys.argv]),
                "image": image,
                "node": "localhost (kubelet v1.37.2, containerd 1.6.20, runc 1.1.5)",
                "machine": machine(load_before),
                "bare_job": bare,
                "tracectl": ours,
                "kpo": kpo,
                "overhead": overheads(bare, ours, kpo),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
