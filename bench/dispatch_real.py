"""Real-pod dispatch: Job created -> container running -> succeeded, on the real node.

    python bench/dispatch_real.py --tasks 30       # needs deploy/local/kubernetes + registry

Two sides run the same image (the runtime image `tracectl image build` pushes) and the same
argv (`python3 -c pass`) on the real node `localhost` (kubelet + containerd + runc), one task at
a time: `tracectl`, KubernetesExecutor.launch() (its Job has the `prepare` init container,
then the task under `python -m controller.runtime.phases exec`), and `bare`, a Job of one
container with the argv alone. A watch on pods (started before the first task) stamps, with
this process's clock, when each Job's pod is first seen Running and Succeeded; the figures run
from just before the create call. `overhead_ratio` is tracectl's p50 to succeeded over the
bare Job's. The JSON on stdout carries the figures and the command line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import stats  # noqa: E402

ARGV = ["python3", "-c", "pass"]
NODE = {"kubernetes.io/hostname": "localhost"}
TAINT = "tracectl.io/real-node"


class PodClock:
    """First time each job-name's pod is seen Running / Succeeded in a pod watch."""

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
                job = (pod.metadata.labels or {}).get("job-name")
                phase = pod.status.phase
                if job and phase in ("Running", "Succeeded", "Failed"):
                    with self.cond:
                        self.seen.setdefault((job, phase), time.perf_counter())
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


def summary(values: list[float]) -> dict[str, Any]:
    mean = round(statistics.fmean(values), 1)
    return {**stats.summary(values, digits=1), "mean_ms": mean}


def bare_job(name: str, image: str) -> Any:
    from kubernetes import client

    container = client.V1Container(name="task", image=image, command=ARGV)
    spec = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        node_selector=NODE,
        host_network=True,
        tolerations=[client.V1Toleration(key=TAINT, operator="Exists")],
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
        t0 = time.perf_counter()
        batch.create_namespaced_job(namespace, bare_job(name, image))
        r, s = clock.wait(name)
        running.append((r - t0) * 1000)
        done.append((s - t0) * 1000)
    return {"to_running": summary(running), "to_succeeded": summary(done)}


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
        tolerate=(TAINT,),
        host_network=True,
        follow_logs=False,
    )
    executor = KubernetesExecutor(Settings(home=home), cluster)
    running, done = [], []
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
            t0 = time.perf_counter()
            ref = executor.launch(Launch(doc, home / task_id))
            r, s = clock.wait(ref.name)
            running.append((r - t0) * 1000)
            done.append((s - t0) * 1000)
    finally:
        executor.close()
    return {"to_running": summary(running), "to_succeeded": summary(done)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--image", help="default: build/push the runtime image now")
    args = parser.parse_args()
    from kubernetes import client, config

    from bench.dispatch import kubeconfig_from_stack
    from controller.images.build import BuildRequest, build

    image = (
        args.image
        or build(
            BuildRequest(
                registry="127.0.0.1:5001", source=REPO, cache=Path.home() / ".cache/tracectl/images"
            )
        ).reference
    )
    kubeconfig = kubeconfig_from_stack()
    api = config.new_client_from_config(config_file=kubeconfig)
    namespace = f"bench-real-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    clock = PodClock(api, namespace)
    time.sleep(1)  # the watch is open before the first create
    home = Path(f"/tmp/{namespace}")
    try:
        bare = run_bare(api, namespace, clock, image, args.tasks)
        ours = run_tracectl(api, kubeconfig, namespace, clock, image, args.tasks, home)
    finally:
        core.delete_namespace(namespace)
    ratio = ours["to_succeeded"]["p50_ms"] / bare["to_succeeded"]["p50_ms"]
    print(
        json.dumps(
            {
                "command": " ".join(["python", *sys.argv]),
                "image": image,
                "node": "localhost (kubelet v1.37.2, containerd 1.6.20, runc 1.1.5)",
                "bare_job": bare,
                "tracectl": ours,
                "overhead_ratio_p50_succeeded": round(ratio, 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
