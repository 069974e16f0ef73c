"""Exact reproduction of a run: the same commit, DVC data, image, params and inputs.

Everything is checked before anything is written: a dataset whose md5 moved or whose
object left the DVC remote, or an input artifact no longer stored, refuses the whole
reproduction with a Conflict naming it, and no new run appears.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import select

from controller.core.service import ControllerService
from controller.domain.events import RunReproduces
from controller.domain.requests import RunCreate, TaskCreate
from controller.domain.spec import TaskSpec
from controller.errors import Conflict, NotFound
from controller.lineage.reproduce_env import environment_problems, pinned_environment
from controller.runtime import data as dvc_data
from controller.store.schema import (
    ArtifactRow,
    LineageEventRow,
    LineageRecordRow,
    RunRow,
    TaskRow,
)


@dataclass
class Plan:
    run: RunRow
    tasks: list[TaskCreate] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def remote_object(remote: str, md5: str) -> Path | None:
    """Where a local DVC remote keeps MD5 (DVC 3 layout first, then DVC 2); None if remote."""
    parsed = urlparse(remote)
    if parsed.scheme not in ("", "file"):
        return None
    root = Path(unquote(parsed.path) if parsed.scheme else remote)
    for candidate in (root / "files" / "md5" / md5[:2] / md5[2:], root / md5[:2] / md5[2:]):
        if candidate.exists():
            return candidate
    return root / "files" / "md5" / md5[:2] / md5[2:]


class Reproducer:
    def __init__(self, service: ControllerService) -> None:
        self.service = service
        self.store = service.supervisor.store

    def plan(self, run_id: str) -> Plan:
        with self.service.db.read() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise NotFound(f"run {run_id} does not exist")
            tasks = list(session.scalars(select(TaskRow).where(TaskRow.run_id == run_id)
                                         .order_by(TaskRow.created_at, TaskRow.id)))
            records = {r.task_id: r.record for r in session.scalars(
                select(LineageRecordRow).where(LineageRecordRow.run_id == run_id))}
            artifacts = {a.sha256: a for a in session.scalars(
                select(ArtifactRow).where(ArtifactRow.sha256.in_(
                    [i["artifact"].split(":", 1)[1] for t in tasks
                     for i in t.spec.get("inputs", []) if i["artifact"].startswith("sha256:")])))}
        plan = Plan(run=run)
        if not tasks:
            plan.problems.append({"loc": ["run", run_id], "msg": "the run has no tasks"})
        for task in tasks:
            spec = self._pinned_spec(task, plan)
            self._check_data(task, records.get(task.id) or {}, plan)
            self._check_inputs(task, artifacts, plan)
            plan.problems += environment_problems(task, self.service.submission.git_cache)
            if spec is not None:
                plan.tasks.append(TaskCreate(name=task.name, spec=spec))
        return plan

    def _pinned_spec(self, task: TaskRow, plan: Plan) -> TaskSpec | None:
        spec = {k: v for k, v in task.spec.items()}
        if spec.get("secret_env"):
            plan.problems.append({
                "loc": ["tasks", task.name, "secret_env"],
                "msg": f"task {task.name!r} used secret env {spec['secret_env']}; secrets are "
                       "never stored, so it cannot be resubmitted as it ran"})
            return None
        resolved = task.resolved or {}
        if spec.get("labels"):  # a reproduction was not submitted by that Airflow task instance
            spec["labels"] = {k: v for k, v in spec["labels"].items()
                              if not k.startswith("airflow_")}
        if spec.get("code"):
            spec["code"] = {**spec["code"], "commit": resolved.get("commit")}
        if spec.get("data"):
            revs = {d["rev"] for d in resolved.get("data", [])}
            spec["data"] = {**spec["data"], "rev": revs.pop() if len(revs) == 1 else None}
        if pinned := pinned_environment(resolved.get("environment") or {}):
            spec["environment"] = pinned
        return TaskSpec.model_validate(spec)

    def _check_data(self, task: TaskRow, record: dict[str, Any], plan: Plan) -> None:
        repo = str((task.spec.get("code") or {}).get("repo", ""))
        remotes = {d["path"]: d.get("remote") for d in record.get("data", [])}
        for entry in (task.resolved or {}).get("data", []):
            loc = ["tasks", task.name, "data", entry["path"]]
            try:
                md5 = dvc_data.tracked_md5(repo, entry["rev"], entry["path"],
                                           self.service.submission.git_cache)
            except (dvc_data.DataError, ValueError, OSError) as exc:
                plan.problems.append({"loc": loc, "msg": f"cannot read {entry['path']!r} at "
                                      f"{entry['rev'][:12]}: {exc}"})
                continue
            if md5 != entry["md5"]:
                plan.problems.append({"loc": loc, "msg": (
                    f"{entry['path']!r} at {entry['rev'][:12]} now has md5 {md5}, "
                    f"not the recorded {entry['md5']}")})
                continue
            remote = remotes.get(entry["path"])
            if not remote:
                plan.unchecked.append(f"{entry['path']}: no DVC remote recorded")
                continue
            where = remote_object(remote, entry["md5"])
            if where is None:
                plan.unchecked.append(f"{entry['path']}: remote {remote} not checked")
            elif not where.exists():
                plan.problems.append({"loc": loc, "msg": (
                    f"dataset {entry['path']}@{entry['md5']} is no longer retrievable: "
                    f"the DVC remote {remote} has no object {entry['md5']}")})

    def _check_inputs(self, task: TaskRow, artifacts: dict[str, ArtifactRow], plan: Plan) -> None:
        for item in task.spec.get("inputs", []):
            if not item["artifact"].startswith("sha256:"):
                continue  # task:<name>/… refs are rewired to the new run's tasks
            sha = item["artifact"].split(":", 1)[1]
            stored = artifacts.get(sha)
            if stored is None or not self.store.exists(stored.uri):
                plan.problems.append({"loc": ["tasks", task.name, "inputs", item["path"]],
                                      "msg": f"input artifact sha256:{sha} is no longer stored"})

    def reproduce(self, run_id: str) -> dict[str, Any]:
        plan = self.plan(run_id)
        if plan.problems:
            raise Conflict(f"run {run_id} cannot be reproduced exactly: "
                           + "; ".join(p["msg"] for p in plan.problems), plan.problems)
        old = plan.run
        new, _ = self.service.create_run(RunCreate(
            pipeline=old.pipeline, labels={**old.labels, "tracectl.reproduces": old.id}))
        with self.service.db.write() as session:
            row = session.get(RunRow, new.id)
            assert row is not None
            row.reproduces = old.id
            session.add(LineageEventRow.of(
                RunReproduces(reproduces=old.id, unchecked=plan.unchecked), new.id))
        task_ids = {}
        for request in plan.tasks:
            task, _ = self.service.submit_task(new.id, request)
            task_ids[request.name] = task.id
        self.service.close_run(new.id)  # every task of the original is in: no more
        return {"run_id": new.id, "reproduces": old.id, "tasks": task_ids,
                "unchecked": plan.unchecked}


def compare(service: ControllerService, run_id: str) -> dict[str, Any]:
    """Outputs of a reproduction against its original, per (task, path), by sha256."""
    with service.db.read() as session:
        run = session.get(RunRow, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        if not run.reproduces:
            raise Conflict(f"run {run_id} is not a reproduction of another run")
        original = run.reproduces
        rows = session.execute(
            select(TaskRow.run_id, TaskRow.name, TaskRow.status, ArtifactRow.path,
                   ArtifactRow.sha256)
            .join(ArtifactRow, ArtifactRow.task_id == TaskRow.id, isouter=True)
            .where(TaskRow.run_id.in_([run_id, original]))
        ).all()
    outputs: dict[tuple[str, str], dict[str, str | None]] = {}
    statuses: dict[str, dict[str, str]] = {}
    for rid, name, status, path, sha in rows:
        side = "reproduced" if rid == run_id else "original"
        statuses.setdefault(name, {})[side] = status
        if path is not None:
            outputs.setdefault((name, path), {"original": None, "reproduced": None})[side] = sha
    items = [{"task": t, "path": p, **s, "identical": s["original"] == s["reproduced"]}
             for (t, p), s in sorted(outputs.items())]
    finished = all(s.get("reproduced") in ("succeeded", "failed", "cancelled")
                   for s in statuses.values())
    return {"run_id": run_id, "reproduces": original, "finished": finished,
            "identical": finished and bool(items) and all(i["identical"] for i in items),
            "tasks": statuses, "outputs": items}
