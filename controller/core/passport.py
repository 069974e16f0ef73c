"""The run passport: every identity a run touched, in one document with a content hash.

Joined under the run id (the correlation id): the Airflow DAG run and the DAG file's commit,
each task's executor object, image/environment, git commit, DVC inputs and remote, MLflow
run and registered model versions, where its log lines are (file record, Kafka, search
index, archive with sha256), the leases it held with their fencing tokens, its outputs,
and the heads of the audit and lineage hash chains at the time of issue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from controller.audit.chain import heads
from controller.domain.refs import executor_record
from controller.lineage.capture import lease_lineage
from controller.ports import LogReader, Tracking
from controller.scheduling import lease_views
from controller.store.database import Database
from controller.store.reconcile_schema import LogReconciliationRow
from controller.store.run_rows import run_records, run_tasks
from controller.store.schema import RunRow, TaskRow

SIGNED_FIELDS = ("content_sha256", "hmac_sha256")


def canonical(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k not in SIGNED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def seal(document: dict[str, Any], key: str | None) -> dict[str, Any]:
    raw = canonical(document)
    document["content_sha256"] = hashlib.sha256(raw).hexdigest()
    if key:
        document["hmac_sha256"] = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    return document


def check(document: dict[str, Any], key: str | None = None) -> list[str]:
    """Problems with a passport copy: [] when its hash (and HMAC, given the key) match."""
    raw = canonical(document)
    problems = []
    if hashlib.sha256(raw).hexdigest() != document.get("content_sha256"):
        problems.append("content_sha256 does not match: the document was changed")
    if key is not None:
        mac = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, str(document.get("hmac_sha256", ""))):
            problems.append("hmac_sha256 does not match the key")
    return problems


def _log_copies(rows: list[LogReconciliationRow]) -> dict[str, Any]:
    """Where the attempt's log lines are besides the file record, from its last check:
    Kafka offset ranges (log lines and status events), the index data stream and document
    count, and the reconciliation of the four copies."""
    by_copy = {r.copy: r for r in rows}
    out: dict[str, Any] = {}
    kafka = by_copy.get("kafka")
    if kafka is not None:
        out["kafka"] = {
            "log_ranges": (kafka.detail or {}).get("ranges", []),
            "status_event_ranges": (kafka.detail or {}).get("status_events", []),
        }
    index = by_copy.get("index")
    if index is not None and index.status not in ("n/a", "pending"):
        out["index"] = {
            "data_streams": (index.detail or {}).get("data_streams", []),
            "documents": (index.detail or {}).get("documents"),
        }
    if rows:
        out["reconciliation"] = {
            "attempt": rows[0].attempt,
            "copies": {
                r.copy: {
                    "status": r.status,
                    "lines": r.lines,
                    "checksum": r.checksum,
                    "summary": (r.detail or {}).get("summary", r.status),
                    "checked_at": r.checked_at.isoformat() if r.checked_at else None,
                    "repaired_at": (r.repaired_at.isoformat() if r.repaired_at else None),
                }
                for r in rows
            },
        }
        archive = by_copy.get("archive")
        if archive is not None and (archive.detail or {}).get("previous_sha256"):
            out["reconciliation"]["archive_rewritten"] = {
                "sha256": archive.detail.get("sha256"),
                "previous_sha256": archive.detail["previous_sha256"],
            }
    return out


def _task_entry(
    task: TaskRow,
    record: dict[str, Any] | None,
    tracking: Tracking,
    reader: LogReader,
    checks: list[LogReconciliationRow],
    leases: list[dict[str, Any]],
) -> dict[str, Any]:
    record = record or {}
    logs = {**dict(record.get("logs") or {}), **_log_copies(checks)}
    if task.attempt and record:
        try:
            logs["reader"] = reader.summary(task.run_id, task.id, task.attempt)
        except Exception as exc:  # the index may be down; the passport says so
            logs["reader"] = {"error": str(exc)}
    models: list[dict[str, str]] = []
    if task.mlflow_run_id:
        try:
            models = list(tracking.iter_model_versions(task.mlflow_run_id))
        except Exception as exc:
            models = [{"error": str(exc)}]
    return {
        "task_id": task.id,
        "name": task.name,
        "status": task.status,
        "attempts": task.attempt,
        "exit_code": task.exit_code,
        "reason": task.reason,
        "executor": record.get("executor") or executor_record(task.executor, task.executor_ref),
        "image": (record.get("environment") or {}).get("image") or task.spec.get("image"),
        "environment": record.get("environment"),
        "code": record.get("code"),
        "data": record.get("data", []),
        "params": record.get("params", task.spec.get("params", {})),
        "mlflow": record.get("mlflow"),
        "model_versions": models,
        "logs": logs,
        "leases": [lease_lineage(lease) for lease in leases],
        "inputs": record.get("inputs", []),
        "outputs": record.get("outputs", []),
        "preflight": record.get("preflight", (task.resolved or {}).get("preflight", [])),
    }


def build_passport(
    db: Database, run_id: str, tracking: Tracking, reader: LogReader, key: str | None = None
) -> dict[str, Any] | None:
    with db.read() as session:
        run = session.get(RunRow, run_id)
        if run is None:
            return None
        tasks = run_tasks(session, run_id)
        records = run_records(session, run_id)
        attempts = {t.id: t.attempt for t in tasks}
        leases = lease_views.task_leases(session, list(attempts))
        checks: dict[str, list[LogReconciliationRow]] = {}
        for row in session.scalars(
            select(LogReconciliationRow)
            .where(LogReconciliationRow.run_id == run_id)
            .order_by(LogReconciliationRow.id)
        ):
            if row.attempt == attempts.get(row.task_id):
                checks.setdefault(row.task_id, []).append(row)
        chain_heads = heads(session)
        run_info = {
            "id": run.id,
            "pipeline": run.pipeline,
            "status": run.status,
            "team": run.team,
            "labels": run.labels,
            "reproduces": run.reproduces,
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        }
        airflow = {
            "dag_id": run.airflow_dag_id,
            "run_id": run.airflow_run_id,
            "dag_commit": (run.labels or {}).get("dag_commit"),
        }
    document: dict[str, Any] = {
        "passport_version": 1,
        "correlation_id": run_id,
        "issued_at": datetime.now(UTC).isoformat(),
        "run": run_info,
        "airflow": airflow,
        "tasks": [
            _task_entry(t, records.get(t.id), tracking, reader, checks.get(t.id, []), leases[t.id])
            for t in tasks
        ],
        "chains": chain_heads,
    }
    return seal(document, key)
