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

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Param

from controller.airflow.selfcheck import TIMEOUT, selfcheck_dag, tracectl_tasks

NODE = {"kubernetes.io/hostname": "localhost"}  # tracectl's pods: TRACECTL_K8S_NODE_SELECTOR

with selfcheck_dag(
    "tracectl_selfcheck_kubernetes",
    ["python3", "-c", "print('hello from a pod')"],
    description="one command in one image as KubernetesPodOperator, tracectl awaited and deferred",
    tags=["kubernetes"],
    params={
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
    tracectl_tasks(command="{{ params.command }}", image="{{ params.image }}")
