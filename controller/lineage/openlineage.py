"""OpenLineage RunEvents of a run's tasks, derived from the lineage event log.

One OpenLineage run per task attempt: START when it started, COMPLETE / FAIL / ABORT when it
ended. For a task submitted from Airflow the `parent` facet names the task instance's try
exactly as Airflow's OpenLineage provider does (its namespace, job = "<dag_id>.<task_id>", the
same runId) and its `root` the DAG run (job = dag_id), so these events join the ones the
provider sends for that task instance and DAG run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select

from controller import __version__
from controller.domain.events import EventType
from controller.errors import NotFound
from controller.lineage.uris import repo_uri
from controller.scheduling import lease_views
from controller.store.database import Database
from controller.store.run_rows import run_records
from controller.store.schema import LineageEventRow, RunRow, TaskRow

log = logging.getLogger("tracectl.lineage.openlineage")

PRODUCER = f"https://github.com/tracectl/tracectl/tree/v{__version__}"
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACETS = "https://openlineage.io/spec/facets"
SCHEMAS = {
    "parent": f"{FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "sourceCodeLocation": (
        f"{FACETS}/1-1-0/SourceCodeLocationJobFacet.json#/$defs/SourceCodeLocationJobFacet"
    ),
    "version": f"{FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "errorMessage": f"{FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
}
# Custom facets point at this project's own facet schemas (docs/lineage.md describes them).
CUSTOM = "https://github.com/tracectl/tracectl/blob/main/docs/lineage.md"
NAMESPACE = "tracectl"
END_TYPES = {"succeeded": "COMPLETE", "failed": "FAIL", "cancelled": "ABORT"}
_UUID_NS = uuid.UUID("6f1d3c1e-2b1a-5a4e-9a63-7d0f8f2a1c01")
# The provider's job namespace when Airflow sets none ([openlineage] namespace,
# OPENLINEAGE_NAMESPACE): the operator sends the one it sees as a run label.
AIRFLOW_NAMESPACE = "default"


def run_uuid(task_id: str, attempt: int) -> str:
    """A stable OpenLineage runId: the same attempt always maps to the same UUID."""
    return str(uuid.uuid5(_UUID_NS, f"{task_id}#{attempt}"))


def static_uuid7(instant: datetime, data: bytes) -> uuid.UUID:
    """openlineage-python's `generate_static_uuid`, restated (the controller does not depend on
    openlineage-python): a UUIDv7 whose 48-bit time is INSTANT in ms and whose other 76 bits are
    the SHA-1 of INSTANT's UTC ISO form + DATA. The same inputs always give the same id."""
    instant_utc = instant.astimezone(UTC)
    node = int(sha1(instant_utc.isoformat().encode() + data).hexdigest(), 16) >> 84  # noqa: S324
    value = (int(instant_utc.timestamp() * 1000) & 0xFFFF_FFFF_FFFF) << 80
    value |= node & 0xFFFF_FFFF_FFFF_FFFF_FFFF
    value = (value & ~(0xF000 << 64)) | (7 << 76)  # version 7
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    return uuid.UUID(int=value)


def airflow_dag_run_uuid(
    namespace: str, dag_id: str, logical_date: datetime, clear_number: int
) -> str:
    """The runId Airflow's OpenLineage provider gives a DAG run
    (`OpenLineageAdapter.build_dag_run_id`: uuid7 of the logical date — `run_after` when the
    run has none — and "<namespace>.<dag_id>.<clear_number>")."""
    return str(static_uuid7(logical_date, f"{namespace}.{dag_id}.{clear_number}".encode()))


def airflow_task_instance_uuid(
    namespace: str,
    dag_id: str,
    task_id: str,
    try_number: int,
    logical_date: datetime,
    map_index: int,
) -> str:
    """The runId Airflow's OpenLineage provider gives a task instance's try
    (`build_task_instance_ol_run_id`: uuid7 of the DAG run's date and
    "<namespace>.<dag_id>.<task_id>.<try_number>.<map_index>")."""
    data = f"{namespace}.{dag_id}.{task_id}.{try_number}.{map_index}".encode()
    return str(static_uuid7(logical_date, data))


def airflow_parent(
    dag_id: str | None, labels: Mapping[str, str], task_labels: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The Airflow run above a task as OpenLineage parent, named as Airflow's provider names it.

    From the run labels the operator sets (`airflow_logical_date`, `airflow_clear_number`,
    `airflow_openlineage_namespace`): the DAG run. With the task's labels
    (`airflow_task_id`, `airflow_try_number`, `airflow_map_index`): the task instance's try
    that submitted it, with the DAG run as `root`. None without a date (a run not made by the
    operator): a guessed runId would join nothing.
    """
    logical_date = labels.get("airflow_logical_date")
    if not (dag_id and logical_date):
        return None
    namespace = labels.get("airflow_openlineage_namespace") or AIRFLOW_NAMESPACE
    date = datetime.fromisoformat(logical_date)
    dag_run = {
        "run": {
            "runId": airflow_dag_run_uuid(
                namespace, dag_id, date, int(labels.get("airflow_clear_number") or 0)
            )
        },
        "job": {"namespace": namespace, "name": dag_id},
    }
    task = task_labels or {}
    task_id, try_number = task.get("airflow_task_id"), task.get("airflow_try_number")
    if not (task_id and try_number):
        return _facet(SCHEMAS["parent"], **dag_run)
    run_id = airflow_task_instance_uuid(
        namespace, dag_id, task_id, int(try_number), date, int(task.get("airflow_map_index") or -1)
    )
    return _facet(
        SCHEMAS["parent"],
        run={"runId": run_id},
        job={"namespace": namespace, "name": f"{dag_id}.{task_id}"},
        root=dag_run,
    )


def _facet(schema: str, **fields: Any) -> dict[str, Any]:
    # The spec types optional facet fields as strings, numbers …, never null: leave them out.
    present = {name: value for name, value in fields.items() if value is not None}
    return {"_producer": PRODUCER, "_schemaURL": schema, **present}


def _custom(name: str, **fields: Any) -> dict[str, Any]:
    return _facet(f"{CUSTOM}#{name}", **fields)


def _dataset_of_uri(uri: str) -> tuple[str, str]:
    """OpenLineage naming: namespace = scheme://authority, name = the path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return "file", parsed.path
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip("/")


def _artifact(item: dict[str, Any]) -> dict[str, Any]:
    namespace, name = _dataset_of_uri(item["uri"])
    return {
        "namespace": namespace,
        "name": name,
        "facets": {
            "version": _facet(SCHEMAS["version"], datasetVersion=item["sha256"]),
            "tracectl_artifact": _custom(
                "ArtifactFacet", path=item["path"], sha256=item["sha256"], size=item.get("size")
            ),
        },
    }


def _job(run: RunRow, task: TaskRow, record: dict[str, Any]) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    code = record.get("code") or {}
    if code or task.spec.get("code"):
        repo = repo_uri(code.get("repo") or task.spec["code"]["repo"])
        facets["sourceCodeLocation"] = _facet(
            SCHEMAS["sourceCodeLocation"],
            type="git",
            url=repo,
            repoUrl=repo,
            version=code.get("commit") or (task.resolved or {}).get("commit"),
            branch=code.get("ref") or task.spec["code"].get("ref"),
        )
    return {"namespace": NAMESPACE, "name": f"{run.pipeline}.{task.name}", "facets": facets}


def _run_facets(
    run: RunRow, task: TaskRow, record: dict[str, Any], leases: list[dict[str, Any]]
) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    parent = airflow_parent(run.airflow_dag_id, run.labels or {}, task.spec.get("labels"))
    if parent is not None:
        facets["parent"] = parent
    env = record.get("environment") or {}
    facets["tracectl_environment"] = _custom(
        "EnvironmentFacet",
        image=task.spec.get("image") or env.get("image"),
        python_version=env.get("python_version"),
        pip_freeze_sha256=env.get("pip_freeze_sha256"),
        kind=env.get("kind"),
        key=env.get("key"),
        lockFile=env.get("path"),
        lockSha256=env.get("lock_sha256"),
        packages=env.get("packages") or [],
        packagesUri=env.get("packages_uri"),
    )
    facets["tracectl_task"] = _custom(
        "TaskFacet",
        run_id=run.id,
        task_id=task.id,
        task_name=task.name,
        attempt=task.attempt,
        params=task.spec.get("params", {}),
        airflow_dag_id=run.airflow_dag_id,
        airflow_run_id=run.airflow_run_id,
    )
    mlflow = record.get("mlflow")
    if mlflow:
        facets["mlflow"] = _custom(
            "MlflowRunFacet",
            trackingUri=mlflow["tracking_uri"],
            experimentId=mlflow["experiment_id"],
            runId=mlflow["run_id"],
        )
    if leases:
        facets["tracectl_leases"] = _custom("LeasesFacet", leases=leases)
    logs = record.get("logs") or {}
    if logs:
        archive = logs.get("archive") or {}
        facets["tracectl_logs"] = _custom(
            "LogsFacet",
            lines=logs.get("lines"),
            sha256=logs.get("sha256"),
            archiveUri=archive.get("uri"),
            api=f"/v1/tasks/{task.id}/logs",
        )
    return facets


def _inputs(task: TaskRow, record: dict[str, Any], used: list[dict[str, Any]]) -> list[Any]:
    repo = (task.spec.get("code") or {}).get("repo", "")
    remotes = {d["path"]: d.get("remote") for d in record.get("data", [])}
    datasets = [
        {
            "namespace": f"dvc://{repo}",
            "name": d["path"],
            "facets": {
                "version": _facet(SCHEMAS["version"], datasetVersion=d["md5"]),
                "dvc": _custom(
                    "DvcDatasetFacet", md5=d["md5"], rev=d["rev"], remote=remotes.get(d["path"])
                ),
            },
        }
        for d in (task.resolved or {}).get("data", [])
    ]
    return (
        datasets
        + [_model(uri) for uri in task.spec.get("models") or []]
        + [_artifact(i) for i in used]
    )


def _model(uri: str) -> dict[str, Any]:
    """A registered model version the task declared (`models:/<name>/<version>`)."""
    version = uri.rsplit("/", 1)[-1]
    return {
        "namespace": "mlflow",
        "name": uri,
        "facets": {"version": _facet(SCHEMAS["version"], datasetVersion=version)},
    }


def _event_time(at: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as the spec's date-time format wants (never a naive time)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_events(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Every OpenLineage RunEvent of RUN_ID, in the order the log recorded them."""
    return [event for _row_id, event in keyed_events(db, run_id)]


def keyed_events(db: Database, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """run_events, each with the id of the lineage log row it stands for (emission.py)."""
    with db.read() as session:
        run = session.get(RunRow, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        tasks = {t.id: t for t in session.scalars(select(TaskRow).where(TaskRow.run_id == run_id))}
        records = run_records(session, run_id)
        log_rows = list(
            session.scalars(
                select(LineageEventRow)
                .where(LineageEventRow.run_id == run_id)
                .order_by(LineageEventRow.id)
            )
        )
        held = lease_views.task_leases(session, list(tasks))
    events: list[tuple[int, dict[str, Any]]] = []
    attempt: dict[str, int] = {}
    leases: dict[str, list[dict[str, Any]]] = {}
    used: dict[str, list[dict[str, Any]]] = {}
    produced: dict[str, list[dict[str, Any]]] = {}
    for row in log_rows:
        task = tasks.get(row.task_id or "")
        if task is None:
            continue
        record = records.get(task.id) or {}
        payload = row.payload or {}
        if row.type == EventType.TASK_ADMITTED:
            attempt[task.id] = int(payload.get("attempt", 1))
            # from the leases table, as every view reads them (the event's copy is the grant)
            leases[task.id] = [
                lease for lease in held.get(task.id, []) if lease["attempt"] == attempt[task.id]
            ]
            used[task.id], produced[task.id] = [], []
        elif row.type == EventType.INPUT_USED:
            used.setdefault(task.id, []).append(payload)
        elif row.type == EventType.OUTPUT_PRODUCED:
            produced.setdefault(task.id, []).append(payload)
        elif row.type in (EventType.TASK_STARTED, EventType.TASK_COMPLETED):
            number = int(payload.get("attempt") or attempt.get(task.id, 1))
            if row.type == EventType.TASK_STARTED:
                kind, outputs = "START", []
                inputs = _inputs(task, record, [])
            else:
                kind = END_TYPES.get(str(payload.get("status")), "OTHER")
                inputs = _inputs(task, record, used.get(task.id, []))
                outputs = [_artifact(o) for o in produced.get(task.id, [])]
            facets = _run_facets(run, task, record, leases.get(task.id, []))
            if kind == "FAIL" and payload.get("reason"):
                facets["errorMessage"] = _facet(
                    SCHEMAS["errorMessage"],
                    message=str(payload["reason"]),
                    programmingLanguage="python",
                )
            events.append(
                (
                    row.id,
                    {
                        "eventType": kind,
                        "eventTime": _event_time(row.created_at),
                        "producer": PRODUCER,
                        "schemaURL": SPEC,
                        "run": {"runId": run_uuid(task.id, number), "facets": facets},
                        "job": _job(run, task, record),
                        "inputs": inputs,
                        "outputs": outputs,
                    },
                )
            )
    return events
