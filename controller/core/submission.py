"""Creating runs and submitting tasks: validated first, then written in one transaction.

Nothing is written unless every check passes, so a rejected request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.config import Settings
from controller.core import image_pins, preflight
from controller.core.ids import new_id
from controller.core.preflight import Finding
from controller.core.run_end import refuse_if_closed
from controller.domain.events import RunClosed, RunCreated, RunReproduces, TaskSubmitted
from controller.domain.images import ResolvedImage
from controller.domain.records import RunStatus, TaskStatus
from controller.domain.requests import RunCreate, TaskCreate
from controller.domain.spec import TaskSpec
from controller.errors import Conflict, InvalidInput, NotFound
from controller.ports import ImageRegistry
from controller.runtime import code as code_refs
from controller.runtime import data as dvc_data
from controller.runtime import env_resolve
from controller.scheduling.admission import AdmitAll, Admitter
from controller.store.database import Database
from controller.store.schema import (
    ArtifactRow,
    LineageEventRow,
    RunRow,
    TaskRow,
    TaskSecretRow,
)


@dataclass(frozen=True)
class Origin:
    """A run made by reproducing another: which one, and what could not be checked."""

    reproduces: str
    unchecked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _NewTask:
    row: TaskRow
    secrets: dict[str, str]
    event: LineageEventRow


def request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Submission:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        admitter: Admitter | None = None,
        registry: ImageRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.admitter: Admitter = admitter or AdmitAll()
        self.registry = registry  # None: images are recorded as given, not pinned
        self.git_cache = settings.home / "git-mirrors"
        self.policy = preflight.parse_policy(settings.preflight)
        self.git_hosts = {h.strip() for h in settings.git_allowed_hosts.split(",") if h.strip()}
        self.git_schemes = {s.strip() for s in settings.git_allowed_schemes.split(",") if s.strip()}

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self, request: RunCreate, team: str = "default", origin: Origin | None = None
    ) -> tuple[RunRow, bool]:
        """Returns (run, created). A repeated idempotency key returns the first run.

        The request's tasks are resolved and checked before anything is written; then the
        run and all its tasks are one transaction, so a refused task leaves no run behind.
        """
        body, digest = self._run_body(request)
        if (existing := self._existing_run(request, digest, team)) is not None:
            return existing, False
        run_id, now = new_id("run"), datetime.now(UTC)
        tasks = self._prepare_tasks(run_id, team, request.tasks, now)
        with self.db.write() as session:
            if (existing := self._existing_run(request, digest, team, session)) is not None:
                return existing, False  # a concurrent twin won the race
            row = RunRow(
                id=run_id,
                pipeline=request.pipeline,
                team=team,
                status=(RunStatus.RUNNING if tasks else RunStatus.PENDING).value,
                airflow_dag_id=request.airflow_dag_id,
                airflow_run_id=request.airflow_run_id,
                labels=request.labels,
                idempotency_key=request.idempotency_key,
                request_hash=digest,
                reproduces=origin and origin.reproduces,
                created_at=now,
                updated_at=now,
                closed_at=now if request.close else None,
            )
            session.add(row)
            session.add(LineageEventRow.of(RunCreated.model_validate(body), row.id))
            if origin is not None:
                session.add(
                    LineageEventRow.of(
                        RunReproduces(reproduces=origin.reproduces, unchecked=origin.unchecked),
                        row.id,
                    )
                )
            session.flush()  # the run exists before rows that reference it
            for task in tasks:
                self._add_task(session, task)
            if request.close:
                session.add(LineageEventRow.of(RunClosed(), row.id))
        return row, True

    @staticmethod
    def _run_body(request: RunCreate) -> tuple[dict[str, Any], str]:
        """The run.created payload (no task specs: their env may hold secrets) and the hash
        of the whole request (unchanged for requests without tasks, as before they existed)."""
        body = request.model_dump(exclude={"idempotency_key", "tasks", "close"})
        hashed = dict(body)
        if request.tasks or request.close:
            hashed["tasks"] = [t.model_dump(mode="json") for t in request.tasks]
            hashed["close"] = request.close
            body["tasks"] = [t.name for t in request.tasks]
        return body, request_hash(hashed)

    def _existing_run(
        self, request: RunCreate, digest: str, team: str, session: Session | None = None
    ) -> RunRow | None:
        if not request.idempotency_key:
            return None
        query = select(RunRow).where(RunRow.idempotency_key == request.idempotency_key)
        if session is None:
            with self.db.read() as reader:
                existing = reader.scalar(query)
        else:
            existing = session.scalar(query)
        if existing is not None:
            # Keys are global: another team's run is never "the same request" (its body
            # carries no team), so the key answers 409 and shows nothing of it.
            same = existing.request_hash if existing.team == team else None
            self._same_request(same, digest, request.idempotency_key)
        return existing

    def _prepare_tasks(
        self, run_id: str, team: str, requests: list[TaskCreate], now: datetime
    ) -> list[_NewTask]:
        """Resolve every task of a new run; refuse them all (422, tasks.N.<field>) if any
        fails. Each task's upstream siblings are the tasks before it in the list."""
        siblings: dict[str, TaskRow] = {}
        prepared: list[_NewTask] = []
        problems: list[tuple[list[str | int], str]] = []
        with self.db.read() as session:
            for index, request in enumerate(requests):
                try:
                    self._batch_rules(request, siblings)
                    resolved = self._resolve(request.spec, siblings, session, Scope(team))
                except InvalidInput as exc:
                    problems += [(["tasks", index, *e["loc"]], e["msg"]) for e in exc.errors]
                    continue
                body = request.model_dump(mode="json", exclude={"idempotency_key"})
                # a microsecond apart: listings order a run's tasks by (created_at, id)
                at = now + timedelta(microseconds=index)
                task = self._task_row(
                    run_id, team, request, resolved, request_hash({"run_id": run_id, **body}), at
                )
                siblings[request.name] = task.row
                prepared.append(task)
        if problems:
            raise InvalidInput.many(problems)
        return prepared

    @staticmethod
    def _batch_rules(request: TaskCreate, siblings: dict[str, TaskRow]) -> None:
        if request.name in siblings:
            raise InvalidInput(["name"], f"two tasks are named {request.name!r}")
        if request.idempotency_key:
            raise InvalidInput(
                ["idempotency_key"],
                "tasks created with their run take the run's idempotency key, not their own",
            )

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
            # A run's status follows its tasks': one whose only task so far was cancelled
            # is still open (an Airflow DAG run's other tasks, or a cleared task's next try,
            # may still join it). Only closing, which cancelling a run does first, ends that.
            refuse_if_closed(run)
            # Only the siblings this request names (itself, its upstream tasks): a run with
            # many tasks does not load them all on every submit.
            names = (
                {request.name}
                | {i.upstream_task for i in request.spec.inputs if i.upstream_task}
                | set(request.spec.after)
            )
            siblings = {
                t.name: t
                for t in session.scalars(
                    select(TaskRow).where(TaskRow.run_id == run_id, TaskRow.name.in_(names))
                )
            }
            if request.name in siblings:
                raise Conflict(f"run {run_id} already has a task named {request.name!r}")
            resolved = self._resolve(request.spec, siblings, session, Scope(run.team))
        return self._insert(run_id, request, resolved, digest)

    def _insert(
        self, run_id: str, request: TaskCreate, resolved: dict[str, Any], digest: str
    ) -> tuple[TaskRow, bool]:
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
            task = self._task_row(run_id, run.team, request, resolved, digest, datetime.now(UTC))
            self._add_task(session, task)
            run.status = RunStatus.RUNNING.value
            run.updated_at = task.row.created_at
            run.finished_at = None
        return task.row, True

    @staticmethod
    def _task_row(
        run_id: str,
        team: str,
        request: TaskCreate,
        resolved: dict[str, Any],
        digest: str,
        now: datetime,
    ) -> _NewTask:
        """The task's row, secrets and submitted event, not yet added to any session."""
        image = resolved.get("image")
        spec = image_pins.pin(request.spec, image and ResolvedImage.model_validate(image))
        stored_spec = spec.model_dump(mode="json")
        stored_spec["env"] = spec.public_env()
        if spec.code is not None:
            stored_spec["code"]["commit"] = resolved["commit"]
        waits = bool(spec.after) or any(i.upstream_task for i in spec.inputs)
        row = TaskRow(
            id=new_id("task"),
            run_id=run_id,
            name=request.name,
            team=team,
            spec=stored_spec,
            resolved=resolved,
            status=(TaskStatus.PENDING if waits else TaskStatus.QUEUED).value,
            priority=spec.priority,
            attempt=0,
            max_attempts=spec.retries + 1,
            idempotency_key=request.idempotency_key,
            request_hash=digest,
            created_at=now,
            queued_at=None if waits else now,
            updated_at=now,
        )
        event = LineageEventRow.of(
            TaskSubmitted(
                name=request.name,
                resolved=resolved,
                spec={k: v for k, v in stored_spec.items() if k != "env"},
                env_keys=sorted(spec.env),
            ),
            run_id,
            row.id,
        )
        return _NewTask(row, {k: spec.env[k] for k in spec.secret_env}, event)

    @staticmethod
    def _add_task(session: Session, task: _NewTask) -> None:
        session.add(task.row)
        if task.secrets:
            session.flush()
            session.add(TaskSecretRow(task_id=task.row.id, env=task.secrets))
        session.add(task.event)

    def preflight(self, spec: TaskSpec) -> list[preflight.Finding]:
        """All findings for SPEC (refusals included), writing nothing."""
        unfit = self._inventory_findings(spec)
        resolved = self._resolve_sources(spec)
        return unfit + preflight.check(spec, resolved, self.git_cache, self.policy)

    def _inventory_findings(self, spec: TaskSpec) -> list[Finding]:
        """Claims the inventory can never grant: refused, whatever the policy, since such a
        task would otherwise wait in the queue forever."""
        fix = (
            "ask for what the inventory has (`tracectl resources`, GET /v1/resources), "
            "or add it to TRACECTL_INVENTORY_FILE"
        )
        return [
            Finding("resources.not_in_inventory", loc, why, fix, "refuse")
            for loc, why in self.admitter.never_fits(spec.resources)
        ]

    def _resolve(
        self, spec: TaskSpec, siblings: dict[str, TaskRow], session: Session, scope: Scope
    ) -> dict[str, Any]:
        unfit = self._inventory_findings(spec)
        if unfit:  # before any git or DVC work
            raise InvalidInput.many([(f.loc, f.message) for f in unfit])
        resolved = self._resolve_sources(spec)
        resolved["inputs"] = self._resolve_inputs(spec, siblings, session, scope)
        resolved["after"] = self._resolve_after(spec, siblings)
        findings = preflight.check(spec, resolved, self.git_cache, self.policy)
        refused = [f for f in findings if f.action == "refuse"]
        if refused:
            raise InvalidInput.many(
                [(f.loc, f"{f.message} (fix: {f.fix}) [{f.code}]") for f in refused]
            )
        resolved["preflight"] = [f.as_dict() for f in findings]
        return resolved

    def _resolve_sources(self, spec: TaskSpec) -> dict[str, Any]:
        """The image's digest (before any git or DVC work), the commit of the code ref and
        the DVC md5 of each data path; the environment is resolved from the pinned image."""
        resolved: dict[str, Any] = {}
        image = image_pins.resolve(spec, self.registry)
        if image is not None:
            resolved["image"] = image.model_dump()
            spec = image_pins.pin(spec, image)
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

    @staticmethod
    def _resolve_after(spec: TaskSpec, siblings: dict[str, TaskRow]) -> list[str]:
        """The ids of the tasks SPEC.after names, each one of this run's earlier tasks."""
        problems: list[tuple[list[str | int], str]] = []
        for index, name in enumerate(spec.after):
            if name not in siblings:
                problems.append(
                    (["spec", "after", index], f"this run has no task named {name!r} before it")
                )
        if problems:
            raise InvalidInput.many(problems)
        return [siblings[name].id for name in spec.after]

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
                artifact = session.scalar(
                    select(ArtifactRow)
                    .where(ArtifactRow.sha256 == sha, scope.usable())
                    .order_by(ArtifactRow.id)
                    .limit(1)
                )
                if artifact is None:
                    raise InvalidInput(loc, f"no stored artifact has sha256 {sha}")
                inputs.append(
                    {
                        "path": item.path,
                        "sha256": sha,
                        "uri": artifact.uri,
                        "produced_by_task": artifact.task_id,
                    }
                )
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
