"""Builds a task attempt's LineageRecord from what the controller and the runner saw."""

from __future__ import annotations

from typing import Any

from controller.domain.lineage import (
    ArtifactLineage,
    CodeLineage,
    DataLineage,
    EnvironmentLineage,
    LeaseLineage,
    LineageRecord,
    TrackingLineage,
)
from controller.domain.refs import executor_record
from controller.store.schema import RunRow, TaskRow


def _environment(
    spec: dict[str, Any], resolved: dict[str, Any], built: dict[str, Any]
) -> EnvironmentLineage:
    """What the runner built, else what submit resolved (a task that never started)."""
    planned = resolved.get("environment") or {}
    if not built.get("key") and spec.get("image"):
        # A pod ran in its image (Kubernetes): nothing was built from the repo's lock.
        planned = {"kind": "image", "image": spec["image"]}
    info = {**planned, **built}
    return EnvironmentLineage(
        image=spec.get("image") or info.get("image"),
        kind=info.get("kind"),
        key=info.get("key"),
        path=info.get("path"),
        lock_sha256=info.get("lock_sha256"),
        detected=bool(info.get("detected")),
        interpreter=info.get("interpreter"),
        python_version=info.get("python_version") or info.get("python"),
        packages=info.get("packages") or [],
        packages_uri=info.get("packages_uri"),
        pip_freeze_sha256=info.get("packages_sha256") or info.get("pip_freeze_sha256"),
        env_keys=sorted(spec.get("env", {})),
    )


def lease_lineage(lease: dict[str, Any]) -> dict[str, Any]:
    """A lease as records show it, from its `lease_record()` (the leases table)."""
    return LeaseLineage(
        resource=lease["resource"],
        fencing_token=lease["fencing_token"],
        detail={k: v for k, v in lease.items() if k not in {"resource", "fencing_token"}},
    ).model_dump(mode="json")


def with_leases(record: dict[str, Any], leases: list[dict[str, Any]]) -> dict[str, Any]:
    """RECORD with its leases as the leases table holds them now (not stored in it)."""
    return {**record, "leases": [lease_lineage(lease) for lease in leases]}


def build_record(
    task: TaskRow,
    run: RunRow,
    status: str,
    result: dict[str, Any],
    inputs: list[dict[str, Any]],
    tracking_uri: str | None,
    log_summary: dict[str, Any],
) -> LineageRecord:
    spec = task.spec
    resolved = task.resolved or {}
    code = None
    if spec.get("code") and resolved.get("commit"):
        code = CodeLineage(
            repo=spec["code"]["repo"],
            ref=spec["code"]["ref"],
            commit=resolved["commit"],
            dirty=bool(resolved.get("dirty")),
        )
    fetched = {d["path"]: d for d in result.get("data") or []}
    data = [
        DataLineage(
            path=d["path"],
            md5=d["md5"],
            rev=d["rev"],
            remote=fetched.get(d["path"], {}).get("remote"),
        )
        for d in resolved.get("data", [])
    ]
    environment = _environment(spec, resolved, result.get("environment") or {})
    mlflow = None
    if task.mlflow_run_id and tracking_uri:
        mlflow = TrackingLineage(
            tracking_uri=tracking_uri,
            experiment_id=task.mlflow_experiment_id or "",
            run_id=task.mlflow_run_id,
        )
    return LineageRecord(
        run_id=run.id,
        task_id=task.id,
        task_name=task.name,
        attempt=task.attempt,
        status=status,
        exit_code=result.get("exit_code"),
        code=code,
        data=data,
        environment=environment,
        params=spec.get("params", {}),
        command=spec["command"],
        mlflow=mlflow,
        inputs=[
            ArtifactLineage(
                path=i["path"],
                sha256=i["sha256"],
                size=i.get("size", 0),
                uri=i["uri"],
                produced_by_task=i.get("produced_by_task"),
                produced_by_run=i.get("produced_by_run"),
            )
            for i in inputs
        ],
        outputs=[
            ArtifactLineage(
                path=o["path"],
                sha256=o["sha256"],
                size=o["size"],
                uri=o["uri"],
                produced_by_task=task.id,
                produced_by_run=run.id,
            )
            for o in result.get("outputs") or []
        ],
        logs=log_summary,
        preflight=resolved.get("preflight", []),
        executor=executor_record(task.executor, task.executor_ref),
        started_at=task.started_at,
        finished_at=task.finished_at,
    )
