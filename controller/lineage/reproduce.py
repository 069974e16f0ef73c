"""Exact reproduction of a run: the same commit, DVC data, image, params and inputs.

Everything is checked before anything is written: a commit no longer in the repository, a
dataset whose md5 moved or whose object left the DVC remote, an input artifact no longer
stored, a model version gone from the model registry or an image digest gone from its image
registry refuses the whole reproduction with a Conflict naming each
(`tasks.<name>.code.commit`, `tasks.<name>.image`, ...), and no new run appears. The run and
all its tasks are then created, closed, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import select

from controller.core import image_pins
from controller.core.service import ControllerService
from controller.core.submission import Origin
from controller.domain.images import ImageRef, RegistryError
from controller.domain.requests import RunCreate, TaskCreate
from controller.domain.spec import MODEL_URI, TaskSpec
from controller.errors import Conflict, InvalidInput, NotFound
from controller.lineage.reproduce_env import environment_problems, pinned_environment
from controller.ports import ImageRegistry
from controller.runtime import code as code_refs
from controller.runtime import data as dvc_data
from controller.store.run_rows import run_records
from controller.store.schema import (
    ArtifactRow,
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
            tasks = list(
                session.scalars(
                    select(TaskRow)
                    .where(TaskRow.run_id == run_id)
                    .order_by(TaskRow.created_at, TaskRow.id)
                )
            )
            records = run_records(session, run_id)
            artifacts = {
                a.sha256: a
                for a in session.scalars(
                    select(ArtifactRow).where(
                        ArtifactRow.sha256.in_(
                            [
                                i["artifact"].split(":", 1)[1]
                                for t in tasks
                                for i in t.spec.get("inputs", [])
                                if i["artifact"].startswith("sha256:")
                            ]
                        )
                    )
                )
            }
        plan = Plan(run=run)
        if not tasks:
            plan.problems.append(_problem(["run", run_id], "the run has no tasks"))
        for task in tasks:
            spec = self._pinned_spec(task, plan)
            self._check_code(task, plan)
            self._check_data(task, records.get(task.id) or {}, plan)
            self._check_inputs(task, artifacts, plan)
            plan.problems += [
                _problem(p["loc"], p["msg"])
                for p in environment_problems(task, self.service.submission.git_cache)
            ]
            self._check_models(task, plan)
            self._check_image(task, plan)
            if spec is not None:
                plan.tasks.append(TaskCreate(name=task.name, spec=spec))
        return plan

    def _pinned_spec(self, task: TaskRow, plan: Plan) -> TaskSpec | None:
        spec = {k: v for k, v in task.spec.items()}
        if spec.get("secret_env"):
            plan.problems.append(
                _problem(
                    ["tasks", task.name, "secret_env"],
                    (
                        f"task {task.name!r} used secret env {spec['secret_env']}; secrets are "
                        "never stored, so it cannot be resubmitted as it ran"
                    ),
                )
            )
            return None
        resolved = task.resolved or {}
        if spec.get("labels"):  # a reproduction was not submitted by that Airflow task instance
            spec["labels"] = {
                k: v for k, v in spec["labels"].items() if not k.startswith("airflow_")
            }
        if spec.get("code"):
            spec["code"] = {**spec["code"], "commit": resolved.get("commit")}
        if spec.get("data"):
            revs = {d["rev"] for d in resolved.get("data", [])}
            spec["data"] = {**spec["data"], "rev": revs.pop() if len(revs) == 1 else None}
        if pinned := pinned_environment(resolved.get("environment") or {}):
            spec["environment"] = pinned
        return TaskSpec.model_validate(spec)

    def _check_code(self, task: TaskRow, plan: Plan) -> None:
        code = task.spec.get("code") or {}
        commit = (task.resolved or {}).get("commit")
        if not code or not commit:
            return
        try:
            code_refs.resolve(code["repo"], commit, self.service.submission.git_cache)
        except code_refs.CodeError as exc:
            plan.problems.append(
                _problem(
                    ["tasks", task.name, "code", "commit"],
                    (f"commit {commit} of {code['repo']!r} is no longer retrievable: {exc}"),
                )
            )

    def _check_models(self, task: TaskRow, plan: Plan) -> None:
        for uri in task.spec.get("models") or []:
            match = MODEL_URI.match(uri)
            if match is None:
                continue  # task:<name> refs are rewired to the new run's tasks
            try:
                found = self.service.supervisor.tracking.has_model_version(
                    match["name"], match["version"]
                )
            except Exception as exc:  # a registry outage: say so, do not guess
                plan.problems.append(
                    _problem(
                        ["tasks", task.name, "models", uri],
                        f"cannot ask the model registry for {uri}: {exc}",
                    )
                )
                continue
            if not found:
                plan.problems.append(
                    _problem(
                        ["tasks", task.name, "models", uri],
                        f"model version {uri} is no longer registered",
                    )
                )

    def _check_image(self, task: TaskRow, plan: Plan) -> None:
        """The recorded digest must still be in its registry; a tag can only be noted."""
        found = image_pins.image_field(TaskSpec.model_validate(task.spec))
        if found is None:
            return
        loc = ["tasks", task.name, *(str(p) for p in found[0][1:])]
        image, registry = found[1], self.service.submission.registry
        if "@sha256:" not in image:
            plan.unchecked.append(
                f"{task.name}: image {image} is a tag, not a digest: it may have moved "
                "since the run"
            )
        elif registry is None:
            plan.unchecked.append(
                f"{task.name}: image {image} not checked in its registry (TRACECTL_REGISTRY_API)"
            )
        elif (problem := _image_problem(registry, image)) is not None:
            plan.problems.append(_problem(loc, problem))

    def _check_data(self, task: TaskRow, record: dict[str, Any], plan: Plan) -> None:
        repo = str((task.spec.get("code") or {}).get("repo", ""))
        remotes = {d["path"]: d.get("remote") for d in record.get("data", [])}
        for entry in (task.resolved or {}).get("data", []):
            loc = ["tasks", task.name, "data", entry["path"]]
            try:
                md5 = dvc_data.tracked_md5(
                    repo, entry["rev"], entry["path"], self.service.submission.git_cache
                )
            except (dvc_data.DataError, ValueError, OSError) as exc:
                plan.problems.append(
                    _problem(loc, f"cannot read {entry['path']!r} at {entry['rev'][:12]}: {exc}")
                )
                continue
            if md5 != entry["md5"]:
                plan.problems.append(
                    _problem(
                        loc,
                        (
                            f"{entry['path']!r} at {entry['rev'][:12]} now has md5 {md5}, "
                            f"not the recorded {entry['md5']}"
                        ),
                    )
                )
                continue
            remote = remotes.get(entry["path"])
            if not remote:
                plan.unchecked.append(f"{entry['path']}: no DVC remote recorded")
                continue
            where = remote_object(remote, entry["md5"])
            if where is None:
                plan.unchecked.append(f"{entry['path']}: remote {remote} not checked")
            elif not where.exists():
                plan.problems.append(
                    _problem(
                        loc,
                        (
                            f"dataset {entry['path']}@{entry['md5']} is no longer retrievable: "
                            f"the DVC remote {remote} has no object {entry['md5']}"
                        ),
                    )
                )

    def _check_inputs(self, task: TaskRow, artifacts: dict[str, ArtifactRow], plan: Plan) -> None:
        for item in task.spec.get("inputs", []):
            if not item["artifact"].startswith("sha256:"):
                continue  # task:<name>/… refs are rewired to the new run's tasks
            sha = item["artifact"].split(":", 1)[1]
            stored = artifacts.get(sha)
            if stored is None or not self.store.exists(stored.uri):
                plan.problems.append(
                    _problem(
                        ["tasks", task.name, "inputs", item["path"]],
                        f"input artifact sha256:{sha} is no longer stored",
                    )
                )

    def reproduce(self, run_id: str) -> dict[str, Any]:
        plan = self.plan(run_id)
        if plan.problems:
            raise Conflict(
                f"run {run_id} cannot be reproduced exactly: "
                + "; ".join(p["msg"] for p in plan.problems),
                plan.problems,
            )
        old = plan.run
        request = RunCreate(
            pipeline=old.pipeline,
            labels={**old.labels, "tracectl.reproduces": old.id},
            tasks=plan.tasks,
            close=True,
        )  # every task of the original
        try:
            new, _ = self.service.create_run(request, origin=Origin(old.id, plan.unchecked))
        except InvalidInput as exc:  # changed since the plan: still nothing was created
            raise Conflict(
                f"run {run_id} cannot be reproduced exactly: {exc.detail}", exc.errors
            ) from exc
        return {
            "run_id": new.id,
            "reproduces": old.id,
            "tasks": self.service.run_task_ids(new.id),
            "unchecked": plan.unchecked,
        }


def _image_problem(registry: ImageRegistry, image: str) -> str | None:
    """Why IMAGE (name@sha256:...) cannot be pulled as it ran, or None when it can."""
    try:
        ref = ImageRef.parse(image)
    except ValueError as exc:
        return str(exc)
    try:
        if registry.digest(ref) == ref.digest:
            return None
    except RegistryError as exc:  # a registry outage: say so, do not guess
        return f"cannot ask the registry {ref.host} for {image}: {exc}"
    return f"image {image} is no longer in the registry {ref.host}: its manifest was deleted"


def _problem(loc: list[str], msg: str) -> dict[str, Any]:
    return {"loc": loc, "path": ".".join(loc), "msg": msg}


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
            select(
                TaskRow.run_id, TaskRow.name, TaskRow.status, ArtifactRow.path, ArtifactRow.sha256
            )
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
    items = [
        {"task": t, "path": p, **s, "identical": s["original"] == s["reproduced"]}
        for (t, p), s in sorted(outputs.items())
    ]
    finished = all(
        s.get("reproduced") in ("succeeded", "failed", "cancelled") for s in statuses.values()
    )
    return {
        "run_id": run_id,
        "reproduces": original,
        "finished": finished,
        "identical": finished and bool(items) and all(i["identical"] for i in items),
        "tasks": statuses,
        "outputs": items,
    }
