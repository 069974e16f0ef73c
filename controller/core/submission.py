"""Creating runs and submitting tasks: validated first, then written in one transaction.

Nothing is written unless every check passes, so a rejected request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.config import Settings
from controller.core import preflight
from controller.core.ids import new_id
from controller.core.run_end import refuse_if_closed
from controller.domain.events import RunCreated, TaskSubmitted
from controller.domain.records import RunStatus, TaskStatus
from controller.domain.requests import RunCreate, TaskCreate
from controller.domain.spec import TaskSpec
from controller.errors import Conflict, InvalidInput, NotFound
from controller.runtime import code as code_refs
from controller.runtime import data as dvc_data
from controller.runtime import env_resolve
from controller.store.database import Database
from controller.store.schema import (
    ArtifactRow,
    LineageEventRow,
    RunRow,
    TaskRow,
    TaskSecretRow,
)


def request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Submission:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.git_cache = settings.home / "git-mirrors"
        self.policy = preflight.parse_policy(settings.preflight)
        self.git_hosts = {h.strip() for h in settings.git_allowed_hosts.split(",") if h.strip()}
        self.git_schemes = {s.strip() for s in settings.git_allowed_schemes.split(",")
                            if s.strip()}

    # -- runs ---------------------------------------------------------------------------
    def create_run(self, request: RunCreate, team: str = "default") -> tuple[RunRow, bool]:
        """Returns (run, created). A repeated idempotency key returns the first run."""
        body = request.model_dump(exclude={"idempotency_key"})
        digest = request_hash(body)
        with self.db.write() as session:
            if request.idempotency_key:
                existing = session.scalar(
                    select(RunRow).where(RunRow.idempotency_key == request.idempotency_key)
                )
                if existing is not None:
                    # Keys are global: another team's run is never "the same request" (its
                    # body carries no team), so the key answers 409 and shows nothing of it.
                    same = existing.request_hash if existing.team == team else None
                    self._same_request(same, digest, request.idempotency_key)
                    return existing, False
            now = datetime.now(UTC)
            row = RunRow(
                id=new_id("run"), pipeline=request.pipeline, status=RunStatus.PENDING.value,
                team=team, airflow_dag_id=request.airflow_dag_id,
                airflow_run_id=request.airflow_run_id, labels=request.labels,
                idempotency_key=request.idempotency_key, request_hash=digest,
                created_at=now, updated_at=now,
            )
            session.add(row)
            session.add(LineageEventRow.of(RunCreated.model_validate(body), row.id))
        return row, True

    @staticmethod
    def _same_request(stored: str | None, digest: str, key: str) -> None:
        if stored != digest:
            raise Conflict(
                f"idempotency key {key!r} was already used for a different request",
                [{"loc": ["idempotency_key"], "msg": "reused with a different body"}],
            )

    # -- tasks --------------------------------------------------------------------------
    def submit_task(self, run_id: str, request: TaskCreate) -> tuple[TaskRow, bool]:
        body = request.model_dump(mode="json", exclude={"idempotency_key"})
        digest = request_hash({"run_id": run_id, **body})
        if request.idempotency_key:
            with self.db.read() as session:
                existing = session.scalar(
                    select(TaskRow).where(TaskRow.idempotency_key == request.idempotency_key)
                )
                if existing is not None:
                    self._same_request(existing.request_hash, digest, request.idempotency_key)
                    return existing, False
        with self.db.read() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise NotFound(f"run {run_id} does not exist")
            if run.status == RunStatus.CANCELLED.value:
                raise Conflict(f"run {run_id} is cancelled; it takes no new tasks")
            refuse_if_closed(run)
            # Only the siblings this request names (itself, its upstream tasks): a run with
            # many tasks does not load them all on every submit.
            names = {request.name} | {i.upstream_task for i in request.spec.inputs
                                      if i.upstream_task}
            siblings = {t.name: t for t in session.scalars(
                select(TaskRow).where(TaskRow.run_id == run_id, TaskRow.name.in_(names)))}
            if request.name in siblings:
                raise Conflict(f"run {run_id} already has a task named {request.name!r}")
            resolved = self._resolve(request.spec, siblings, session, Scope(run.team))
        return self._insert(run_id, request, resolved, digest)

    def _insert(
        self, run_id: str, request: TaskCreate, resolved: dict[str, Any], digest: str
    ) -> tuple[TaskRow, bool]:
        spec = request.spec
        stored_spec = spec.model_dump(mode="json")
        stored_spec["env"] = spec.public_env()
        if spec.code is not None:
            stored_spec["code"]["commit"] = resolved["commit"]
        now = datetime.now(UTC)
        waits = any(i.upstream_task for i in spec.inputs)
        with self.db.write() as session:
            if request.idempotency_key:  # a concurrent twin may have won the race
                existing = session.scalar(
                    select(TaskRow).where(TaskRow.idempotency_key == request.idempotency_key)
                )
                if existing is not None:
                    self._same_request(existing.request_hash, digest, request.idempotency_key)
                    return existing, False
            run = session.get(RunRow, run_id)
            assert run is not None
            refuse_if_closed(run)  # closed since the check above
            row = TaskRow(
                id=new_id("task"), run_id=run_id, name=request.name, team=run.team,
                spec=stored_spec, resolved=resolved,
                status=(TaskStatus.PENDING if waits else TaskStatus.QUEUED).value,
                priority=spec.priority, attempt=0, max_attempts=spec.retries + 1,
                idempotency_key=request.idempotency_key, request_hash=digest,
                created_at=now, queued_at=None if waits else now, updated_at=now,
            )
            session.add(row)
            secrets = {k: spec.env[k] for k in spec.secret_env}
            if secrets:
                session.flush()
                session.add(TaskSecretRow(task_id=row.id, env=secrets))
            run.status = RunStatus.RUNNING.value
            run.updated_at = now
            run.finished_at = None
            session.add(LineageEventRow.of(TaskSubmitted(
                name=request.name, resolved=resolved,
                spec={k: v for k, v in stored_spec.items() if k != "env"},
                env_keys=sorted(spec.env)), run_id, row.id))
        return row, True

    def preflight(self, spec: TaskSpec) -> list[preflight.Finding]:
        """All findings for SPEC (refusals included), writing nothing."""
        resolved = self._resolve_sources(spec)
        return preflight.check(spec, resolved, self.git_cache, self.policy)

    def _resolve(
        self, spec: TaskSpec, siblings: dict[str, TaskRow], session: Session, scope: Scope
    ) -> dict[str, Any]:
        resolved = self._resolve_sources(spec)
        resolved["inputs"] = self._resolve_inputs(spec, siblings, session, scope)
        findings = preflight.check(spec, resolved, self.git_cache, self.policy)
        refused = [f for f in findings if f.action == "refuse"]
        if refused:
            raise InvalidInput.many(
                [(f.loc, f"{f.message} (fix: {f.fix}) [{f.code}]") for f in refused])
        resolved["preflight"] = [f.as_dict() for f in findings]
        return resolved

    def _resolve_sources(self, spec: TaskSpec) -> dict[str, Any]:
        """The commit of the code ref and the DVC md5 of each data path."""
        resolved: dict[str, Any] = {}
        if spec.code is not None:
            ref = spec.code.commit or spec.code.ref
            loc: list[str | int] = ["spec", "code", "commit" if spec.code.commit else "ref"]
            try:
                code_refs.check_allowed(spec.code.repo, self.git_schemes, self.git_hosts)
            except code_refs.CodeError as exc:
                raise InvalidInput(["spec", "code", "repo"], str(exc)) from exc
            try:
                found = code_refs.resolve(spec.code.repo, ref, self.git_cache)
            except code_refs.CodeError as exc:
                if "does not exist in" in str(exc):
                    raise InvalidInput(loc, str(exc)) from exc
                raise InvalidInput(["spec", "code", "repo"], str(exc)) from exc
            resolved.update(commit=found.commit, dirty=found.dirty, ref=spec.code.ref)
        if spec.data is not None and spec.code is not None:
            rev_commit = resolved["commit"]
            if spec.data.rev:
                try:
                    rev_commit = code_refs.resolve(
                        spec.code.repo, spec.data.rev, self.git_cache
                    ).commit
                except code_refs.CodeError as exc:
                    raise InvalidInput(["spec", "data", "rev"], str(exc)) from exc
            entries = []
            for index, path in enumerate(spec.data.paths):
                try:
                    md5 = dvc_data.tracked_md5(spec.code.repo, rev_commit, path, self.git_cache)
                except dvc_data.DataError as exc:
                    raise InvalidInput(["spec", "data", "paths", index], str(exc)) from exc
                entries.append({"path": path, "md5": md5, "rev": rev_commit})
            resolved["data"] = entries
        resolved["environment"] = self._resolve_environment(spec, resolved.get("commit"))
        return resolved

    def _resolve_environment(self, spec: TaskSpec, commit: str | None) -> dict[str, Any]:
        """The environment declared in the spec, or detected in the repo at COMMIT."""
        read = None
        if spec.code is not None and commit:
            repo = spec.code.repo
            read = lambda path: code_refs.read_file_at(repo, commit, path, self.git_cache)  # noqa: E731
        try:
            return env_resolve.resolve(spec.environment, read).model_dump(mode="json")
        except env_resolve.EnvironmentSpecError as exc:
            raise InvalidInput(["spec", "environment", exc.field], str(exc)) from exc

    def _resolve_inputs(
        self, spec: TaskSpec, siblings: dict[str, TaskRow], session: Session, scope: Scope
    ) -> list[dict[str, Any]]:
        """Each input's artifact. SCOPE is the run's team: another team's artifact is an
        input only through a grant (auth/grants.py), and answers like an unknown one."""
        inputs: list[dict[str, Any]] = []
        for index, item in enumerate(spec.inputs):
            loc: list[str | int] = ["spec", "inputs", index, "artifact"]
            upstream = item.upstream_task
            if upstream is None:
                sha = item.artifact.split(":", 1)[1]
                artifact = session.scalar(select(ArtifactRow).where(
                    ArtifactRow.sha256 == sha, scope.usable()).order_by(ArtifactRow.id).limit(1))
                if artifact is None:
                    raise InvalidInput(loc, f"no stored artifact has sha256 {sha}")
                inputs.append({"path": item.path, "sha256": sha, "uri": artifact.uri,
                               "produced_by_task": artifact.task_id})
                continue
            producer = siblings.get(upstream)
            if producer is None:
                raise InvalidInput(loc, f"this run has no task named {upstream!r}")
            declared = producer.spec.get("outputs", [])
            wanted = item.upstream_output
            if not any(wanted == d or wanted.startswith(d.rstrip("/") + "/") for d in declared):
                raise InvalidInput(
                    loc, f"task {upstream!r} declares no output {wanted!r} (it declares {declared})"
                )
            inputs.append({"path": item.path, "task": producer.id, "output": wanted})
        return inputs
