"""Two runs side by side, task by task: code, data, params, environment, metrics, outputs."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from controller.errors import NotFound
from controller.ports import Tracking
from controller.store.database import Database
from controller.store.run_rows import run_records
from controller.store.schema import RunRow, TaskRow

log = logging.getLogger("tracectl.lineage.diff")


def _side(a: Any, b: Any) -> dict[str, Any]:
    return {"a": a, "b": b, "same": a == b}


def _tasks(db: Database, run_id: str) -> dict[str, tuple[TaskRow, dict[str, Any]]]:
    with db.read() as session:
        if session.get(RunRow, run_id) is None:
            raise NotFound(f"run {run_id} does not exist")
        tasks = list(session.scalars(select(TaskRow).where(TaskRow.run_id == run_id)))
        records = run_records(session, run_id)
    return {t.name: (t, records.get(t.id) or {}) for t in tasks}


def _metrics(tracking: Tracking | None, mlflow_run_id: str | None) -> dict[str, float] | None:
    if tracking is None or not mlflow_run_id:
        return None
    try:
        return tracking.metrics(mlflow_run_id)
    except Exception:  # a tracking server that is down must not break the diff
        log.warning("metrics of MLflow run %s unavailable", mlflow_run_id, exc_info=True)
        return None


def _environment(record: dict[str, Any]) -> dict[str, Any]:
    env = record.get("environment") or {}
    return {k: env.get(k) for k in ("image", "kind", "key", "python_version", "lock_sha256")}


def _pins(record: dict[str, Any]) -> dict[str, str]:
    pins = (record.get("environment") or {}).get("packages") or []
    return {name.lower(): version for name, _, version in (p.partition("==") for p in pins)}


def _packages(ra: dict[str, Any], rb: dict[str, Any]) -> dict[str, Any]:
    """The packages that differ, one by one: added (a None), removed (b None) or changed."""
    a, b = _pins(ra), _pins(rb)
    changes = [
        {"package": name, "a": a.get(name), "b": b.get(name)}
        for name in sorted(set(a) | set(b))
        if a.get(name) != b.get(name)
    ]
    return {"a": len(a), "b": len(b), "same": not changes, "changes": changes}


def diff_runs(db: Database, a: str, b: str, tracking: Tracking | None = None) -> dict[str, Any]:
    left, right = _tasks(db, a), _tasks(db, b)
    tasks: dict[str, Any] = {}
    for name in sorted(set(left) | set(right)):
        ta, ra = left.get(name, (None, {}))
        tb, rb = right.get(name, (None, {}))
        outs_a = {o["path"]: o["sha256"] for o in ra.get("outputs", [])}
        outs_b = {o["path"]: o["sha256"] for o in rb.get("outputs", [])}
        outputs = {
            p: _side(outs_a.get(p), outs_b.get(p)) for p in sorted(set(outs_a) | set(outs_b))
        }
        code_a, code_b = ra.get("code") or {}, rb.get("code") or {}
        entry: dict[str, Any] = {
            "present": _side(ta is not None, tb is not None),
            "status": _side(ta.status if ta else None, tb.status if tb else None),
            "code": _side(code_a.get("commit"), code_b.get("commit")),
            "data": _side(
                {d["path"]: d["md5"] for d in ra.get("data", [])},
                {d["path"]: d["md5"] for d in rb.get("data", [])},
            ),
            "params": _side(
                ra.get("params") if ra else (ta.spec.get("params") if ta else None),
                rb.get("params") if rb else (tb.spec.get("params") if tb else None),
            ),
            "environment": _side(_environment(ra), _environment(rb)),
            "packages": _packages(ra, rb),
            "command": _side(ra.get("command"), rb.get("command")),
            "metrics": _side(
                _metrics(tracking, ta.mlflow_run_id if ta else None),
                _metrics(tracking, tb.mlflow_run_id if tb else None),
            ),
            "outputs": outputs,
        }
        entry["same"] = all(
            v["same"] for k, v in entry.items() if k not in ("outputs", "metrics")
        ) and all(o["same"] for o in outputs.values())
        tasks[name] = entry
    return {
        "a": a,
        "b": b,
        "tasks": tasks,
        "identical_outputs": all(
            all(o["same"] for o in t["outputs"].values()) for t in tasks.values()
        ),
    }
