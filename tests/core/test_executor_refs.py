"""Executor references are one model per kind; the shapes stored before they had a model
(a local runner without a kind, `service` for both local and Kubernetes services, `job` for a
Kubernetes Job) read back as those models, from a task row and from a started event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from controller.domain.events import TaskStarted
from controller.domain.refs import ExternalRef, K8sRef, LocalRef, ServiceRef, dump_ref, parse_ref
from controller.executors.router import ModeRouter
from controller.store.database import Database
from controller.store.schema import TaskRow
from tests.core.test_transitions import queued_task

LOCAL = {"pid": 41, "create_time": 1795620750.14, "host": "vm"}
LOCAL_SERVICE = {**LOCAL, "kind": "service", "port": 8123, "ready_timeout_s": 60.0}
K8S_JOB = {"kind": "job", "namespace": "tracectl", "name": "tracectl-a-1", "uid": "u1"}
K8S_SERVICE = {**K8S_JOB, "kind": "service", "url": "http://tracectl-a-1.tracectl.svc:80"}
EXTERNAL = {"kind": "external", "system": "s", "method": "POST", "path": "/v1", "key": "t/1"}


@pytest.mark.parametrize(
    ("old", "model", "mode"),
    [
        (LOCAL, LocalRef, "job"),
        ({"ended_runner_pid": "41", "host": "vm"}, LocalRef, "job"),
        (LOCAL_SERVICE, ServiceRef, "service"),
        (K8S_JOB, K8sRef, "job"),
        (K8S_SERVICE, K8sRef, "service"),
        (EXTERNAL, ExternalRef, "external"),
    ],
)
def test_an_old_reference_reads_as_its_model_and_routes_by_its_mode(
    old: dict[str, Any], model: type, mode: str
) -> None:
    ref = parse_ref(old)
    assert isinstance(ref, model) and ref.mode == mode
    assert parse_ref(dump_ref(ref)) == ref  # the new shape reads back the same


def test_a_local_service_and_a_kubernetes_service_are_told_apart() -> None:
    local, k8s = parse_ref(LOCAL_SERVICE), parse_ref(K8S_SERVICE)
    assert dump_ref(local)["kind"] == "local-service"  # type: ignore[index]
    assert (dump_ref(k8s) or {})["kind"] == "k8s" and isinstance(k8s, K8sRef)
    assert k8s.object == "service"


def test_a_reference_missing_a_field_of_its_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        parse_ref({"kind": "local-service", **LOCAL, "ready_timeout_s": 1.0})


def test_the_router_hands_each_reference_to_the_executor_of_its_mode() -> None:
    seen: list[tuple[str, Any]] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def cleanup(self, ref: Any) -> None:
            seen.append((self.name, ref))

    router = ModeRouter({m: Recorder(m) for m in ("job", "service", "external")})  # type: ignore[misc]
    for old in (LOCAL, LOCAL_SERVICE, K8S_JOB, K8S_SERVICE, EXTERNAL):
        router.cleanup(parse_ref(old))  # type: ignore[arg-type]
    assert [name for name, _ in seen] == ["job", "service", "job", "service", "external"]


def test_a_task_row_written_before_the_models_reads_back_typed(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'refs.db'}")
    db.migrate()
    task_id = queued_task(db)
    with db.write() as session:  # an old row: the JSON as it was written before
        session.execute(
            text("UPDATE tasks SET executor_ref = :ref WHERE id = :id"),
            {"ref": json.dumps(K8S_SERVICE), "id": task_id},
        )
    with db.read() as session:
        row = session.get(TaskRow, task_id)
        assert row is not None
        assert row.executor_ref == K8sRef(
            object="service",
            namespace="tracectl",
            name="tracectl-a-1",
            uid="u1",
            url=K8S_SERVICE["url"],
        )


def test_a_started_event_of_before_the_models_reads_back_typed() -> None:
    assert TaskStarted.model_validate({"attempt": 1, "ref": {}}).ref is None
    started = TaskStarted.model_validate({"attempt": 1, "ref": LOCAL})
    assert started.ref == LocalRef(pid=41, create_time=1795620750.14, host="vm")
