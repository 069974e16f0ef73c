"""Airflow's KubernetesPodOperator running tasks on the real node, for bench/dispatch_real.py.

    AIRFLOW_VENV/bin/python bench/dispatch_kpo.py KUBECONFIG NAMESPACE IMAGE TASKS

Runs in the Airflow venv of deploy/local/airflow (apache-airflow-providers-cncf-kubernetes).
Each task is a fresh operator, as each Airflow task instance makes one, and its `execute()`:
create the pod, await its start, follow its logs, await completion, delete it. Prints one
line per task, `dispatch_kpo: ` and JSON: the pod's name, the wall clock (time.time) before
`execute()` and after it returned, so the caller's pod watch can be compared with it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from types import SimpleNamespace
from typing import Any

ARGV = ["python3", "-c", "pass"]
RESULT = "dispatch_kpo: "  # Airflow logs to stdout too: the caller reads only these lines
NODE = {"kubernetes.io/hostname": "localhost"}


def operator(i: int, kubeconfig: str, namespace: str, image: str) -> Any:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator(
        task_id=f"task_{i}",
        name=f"kpo-{i}",
        namespace=namespace,
        image=image,
        cmds=ARGV,
        labels={"tracectl.io/bench": "kpo", "job-name": f"kpo-{i}"},
        node_selector=NODE,
        hostnetwork=True,
        config_file=kubeconfig,
        in_cluster=False,
        random_name_suffix=False,
        do_xcom_push=False,
        get_logs=True,
        on_finish_action="delete_pod",
    )


def context(i: int) -> dict[str, Any]:
    """What execute() reads of an Airflow context: the task instance's identity (labels)."""
    ti = SimpleNamespace(
        dag_id="bench",
        task_id=f"task_{i}",
        run_id="bench",
        try_number=1,
        map_index=-1,
        xcom_push=lambda **_: None,  # the pod's name, for Airflow's UI
    )
    return {"ti": ti, "run_id": "bench", "dag": SimpleNamespace(dag_id="bench")}


def main() -> int:
    kubeconfig, namespace, image, tasks = sys.argv[1:5]
    logging.disable(logging.WARNING)
    for i in range(int(tasks)):
        op = operator(i, kubeconfig, namespace, image)
        t0 = time.time()
        op.execute(context(i))
        done = time.time()
        print(RESULT + json.dumps({"job": f"kpo-{i}", "t0": t0, "done": done}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
