"""One command, one image, one Kubernetes node: KubernetesPodOperator, tracectl awaited, deferred.

Triggered with ``{"command": [...], "image": ..., "namespace": ..., "kubeconfig": ...}`` it runs
the command in the image as a ``KubernetesPodOperator`` pod (``kpo``), as a tracectl task awaited
in the worker (``awaited``) and as one deferred at once (``deferred``), in parallel; the
controller of the ``tracectl_default`` connection must run the Kubernetes executor on the same
cluster (its pods then share the node, image and host network with the KPO's). The peer
comparison of ``bench/airflow_overhead.py --executor kubernetes``; the node is ``localhost``,
the real node of deploy/local/kubernetes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, Param

from controller.airflow.operators import TracectlTaskOperator

TIMEOUT = timedelta(seconds=3600)
NODE = {"kubernetes.io/hostname": "localhost"}  # tracectl's pods: TRACECTL_K8S_NODE_SELECTOR

with DAG(
    dag_id="tracectl_selfcheck_kubernetes",
    description="one command in one image as KubernetesPodOperator, tracectl awaited and deferred",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    tags=["tracectl", "check", "kubernetes"],
    params={
        "command": Param(
            ["python3", "-c", "print('hello from a pod')"],
            type="array",
            minItems=1,
            items={"type": "string"},
            description="argv of the command each task runs",
        ),
        "image": Param("", type="string", description="the image, by digest"),
        "namespace": Param("default", type="string", description="the KPO pod's namespace"),
        "kubeconfig": Param("", type="string", description="the KPO's kubeconfig file"),
    },
) as dag:
    KubernetesPodOperator(
        task_id="kpo",
        name="kpo",
        namespace="{{ params.namespace }}",
        image="{{ params.image }}",
        cmds="{{ params.command }}",
        node_selector=NODE,
        hostnetwork=True,
        config_file="{{ params.kubeconfig }}",
        in_cluster=False,
        get_logs=True,
        on_finish_action="delete_pod",
        execution_timeout=TIMEOUT,
    )
    for name, deferrable in (("awaited", False), ("deferred", True)):
        TracectlTaskOperator(
            task_id=name,
            command="{{ params.command }}",
            image="{{ params.image }}",
            deferrable=deferrable,
            wait_before_defer_s=0.0,
            execution_timeout=TIMEOUT,
        )
