"""Pod logs followed over the real API server's `pods/log` stream into the log sink.

Simulated: the container output. KWOK plays the node's kubelet (deploy/local/kubernetes points
the nodes' kubelet port at it); the API server proxies `GET pods/log?follow=true` there, and
KWOK serves the lines of the file that a `ClusterLogs` object names for the container, in the
CRI log format a kubelet reads. The test writes that file: lines appended while the stream is
open arrive live, and a stream quiet for `log_idle_s` is reopened with `sinceTime`, so the
reconnect rule (k8s_logs.LogCursor) runs against the server's real second-precision filter.
Why KWOK and not the real node: the test writes the lines and their stamps (three in one
second, two with one stamp) and when they appear; a real container's lines come when it
prints them (tests/kubernetes/test_real_pods.py follows those).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.config import Settings
from controller.domain.refs import K8sRef
from controller.executors import kubernetes as k8s_executor
from controller.executors.kubernetes import KubernetesExecutor
from controller.logs.file_sink import FileLogReader
from tests.kubernetes.conftest import cluster_config, kwok_placement, make_launch
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(300)]

RUNNING = {"pod-complete.stage.kwok.x-k8s.io/delay": "600s"}  # ends when the test cancels it
SECOND = "2026-11-25T12:00:00"


def cri(stamp: str, message: str) -> str:
    """One line as a container runtime writes it (what a kubelet, and KWOK, read)."""
    return f"{stamp}Z stdout F {message}\n"


@pytest.fixture
def log_files(api: client.ApiClient, namespace: str, tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A ClusterLogs object: every pod of the test namespace logs from these two files."""
    files = {"prepare": tmp_path / "prepare.log", "task": tmp_path / "task.log"}
    for path in files.values():
        path.write_text("")
    custom = client.CustomObjectsApi(api)
    name = f"{namespace}-{uuid.uuid4().hex[:4]}"
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
    custom.create_cluster_custom_object(
        "kwok.x-k8s.io",
        "v1alpha1",
        "clusterlogs",
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchNamespaces": [namespace]},
                "logs": [{"containers": [c], "logsFile": str(p)} for c, p in files.items()],
            },
        },
    )
    yield files
    custom.delete_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "clusterlogs", name)


@pytest.fixture
def follower(
    kubernetes: dict[str, str], namespace: str, settings: Settings
) -> Iterator[KubernetesExecutor]:
    config = cluster_config(kubernetes, namespace, log_idle_s=1.5, **kwok_placement(kubernetes))
    ex = KubernetesExecutor(settings, config)
    yield ex
    ex.close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """(container, sinceTime) of every pods/log request the executor makes (the real one)."""
    opened: list[tuple[str, str | None]] = []
    real = k8s_executor.pod_log_stream

    def counted(
        api: Any, namespace: str, pod: str, container: str, since: str | None, idle_s: float
    ) -> Any:
        opened.append((container, since))
        return real(api, namespace, pod, container, since, idle_s)

    monkeypatch.setattr(k8s_executor, "pod_log_stream", counted)
    return opened


def recorded(settings: Settings, ref: K8sRef, stream: str) -> list[str]:
    lines = FileLogReader(settings).read(str(ref.run_id), str(ref.task_id), 1, 0, 1000)
    return [line.message for line in lines if line.stream == stream]


def reconnects(opened: list[tuple[str, str | None]]) -> int:
    return sum(1 for container, since in opened if container == "task" and since)


def test_pod_log_followed_across_reconnects_without_repeats_or_gaps(
    follower: KubernetesExecutor,
    settings: Settings,
    log_files: dict[str, Path],
    connections: list[tuple[str, str | None]],
    tmp_path: Path,
) -> None:
    log_files["prepare"].write_text(cri(f"{SECOND}.000000001", "checked out abc123"))
    # Three lines in one second, two of them with the very same stamp: a reconnect asks from
    # that second and must skip exactly the ones it already delivered.
    first = [("000000100", "epoch 1"), ("000000200", "epoch 2"), ("000000200", "epoch 2 again")]
    log_files["task"].write_text("".join(cri(f"{SECOND}.{n}", m) for n, m in first))
    ref = follower.launch(make_launch(tmp_path, annotations=RUNNING))

    wait_for(
        "the first lines in the log record",
        lambda: recorded(settings, ref, "stdout") == [m for _n, m in first],
    )
    wait_for("a reconnect after the stream went quiet", lambda: reconnects(connections) >= 1)

    next_second = "2026-11-25T12:00:01"
    with log_files["task"].open("a") as out:  # arrives on the open stream, then is replayed
        out.write(cri(f"{SECOND}.000000300", "epoch 3") + cri(f"{next_second}.5", "epoch 4"))
    before = reconnects(connections)
    wait_for("two more reconnects", lambda: reconnects(connections) >= before + 2)

    stdout = recorded(settings, ref, "stdout")
    assert stdout == ["epoch 1", "epoch 2", "epoch 2 again", "epoch 3", "epoch 4"]
    assert ("task", f"{next_second}Z") in connections  # resumed from the newest line's second
    system = recorded(settings, ref, "system")
    assert system == ["checked out abc123"]  # the init container, and no "unavailable" note
    follower.cancel(ref, 1.0)
    follower.cleanup(ref)
