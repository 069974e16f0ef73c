"""A burst of 1,000 tasks on the KWOK nodes: how fast tracectl puts them on a cluster and they end.

    python bench/dispatch_burst.py --tasks 1000 --submitters 50    # needs deploy/local/kubernetes

SUBMITTERS threads call KubernetesExecutor.launch() for TASKS tasks together (a Job and its
launch Secret each), placed on the KWOK nodes (selector `type=kwok`, toleration of their taint
`tracectl.io/kwok`): the real API server, Job controller and scheduler handle every object; KWOK
plays the kubelet, so a pod ends 2 s after it starts and no container runs. A pod watch (open
before the first launch) stamps when each Job's pod is first Running and Succeeded. Figures:
launch() call time, launch -> pod Running, launch -> pod Succeeded (p50/p95/p99), and the
makespan from the first call to the last pod Succeeded. cpu-worker takes 110 pods at a time, so
the burst also waits on the scheduler. The JSON on stdout carries them and the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.dispatch_real import PodClock, clocked_namespace, summary  # noqa: E402
from bench.machine import load, machine  # noqa: E402

ARGV = ["python", "train.py", "--epochs", "3"]
IMAGE = "registry.invalid/tracectl/task:1"  # never pulled: KWOK runs no containers


def document(task_id: str, home: Path) -> Any:
    from controller.domain.launch import LaunchDocument, LaunchLabels, RuntimeSettings
    from controller.domain.spec import TaskSpec

    return LaunchDocument(
        run_id="run_burst",
        task_id=task_id,
        task_name="train",
        attempt=1,
        spec=TaskSpec.model_validate({"command": ARGV, "image": IMAGE, "env": {"EPOCHS": "3"}}),
        env={"TRACECTL_FENCING_TOKEN": "1"},
        labels=LaunchLabels(team="bench"),
        runtime=RuntimeSettings(home=home, cancel_grace_s=5),
    )


def burst(executor: Any, clock: PodClock, tasks: int, submitters: int, home: Path) -> Any:
    from controller.ports import Launch

    calls: list[float] = []
    started: dict[str, float] = {}
    lock = threading.Lock()

    def submit(worker: int) -> None:
        for _ in range(worker, tasks, submitters):
            task_id = f"task_{uuid.uuid4().hex[:22]}"
            t0 = time.time()
            ref = executor.launch(Launch(document(task_id, home), home / task_id))
            with lock:
                calls.append((time.time() - t0) * 1000)
                started[ref.name] = t0

    first = time.time()
    threads = [threading.Thread(target=submit, args=(w,)) for w in range(submitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted = time.time()
    running, succeeded, last = [], [], first
    for name, t0 in started.items():
        r, s = clock.wait(name, timeout=900)
        running.append((r - t0) * 1000)
        succeeded.append((s - t0) * 1000)
        last = max(last, s)
    return {
        "launch_call": summary(calls),
        "to_running": summary(running),
        "to_succeeded": summary(succeeded),
        "all_launched_s": round(submitted - first, 1),
        "makespan_s": round(last - first, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--submitters", type=int, default=50)
    args = parser.parse_args()
    from kubernetes import client

    from controller.config import ClusterConfig, Settings
    from controller.executors.kubernetes import KubernetesExecutor

    api, kubeconfig, namespace, clock = clocked_namespace("bench-burst")
    core = client.CoreV1Api(api)
    home = Path(f"/tmp/{namespace}")
    cluster = ClusterConfig(
        namespace=namespace,
        image="registry.invalid/tracectl/runtime:1",
        kubeconfig=kubeconfig,
        node_selector={"type": "kwok"},
        tolerate=("tracectl.io/kwok",),
        follow_logs=False,
        create_namespaces=False,
    )
    executor = KubernetesExecutor(Settings(home=home), cluster)
    load_before = load()
    try:
        figures = burst(executor, clock, args.tasks, args.submitters, home)
    finally:
        executor.close()
        core.delete_namespace(namespace)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(load_before),
        "tasks": args.tasks,
        "submitters": args.submitters,
        **figures,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
