"""The task lifecycle engine: admit, launch, watch, finish, retry, cancel, reconcile.

Every transition is written to the store (controller/core/transitions.py: a compare-and-set
on id, attempt and status) before the executor is asked to act, so a controller killed
between any two steps finds, on restart, a record of what it was about to do and completes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import backends
from controller.audit.anchors import write_anchor
from controller.config import Settings, runtime_settings
from controller.core import run_end, transitions
from controller.core.fencing import Deposed, Fence, take_over
from controller.core.promotion import BROKEN, PendingTasks, Upstream, upstream_done
from controller.core.service_readiness import record_readiness
from controller.domain.events import InputUsed, OutputProduced, TaskCompleted
from controller.domain.launch import (
    LATE_ENV,
    InputArtifact,
    LaunchDocument,
    LaunchLabels,
    Resolution,
)
from controller.domain.records import ACTIVE, TERMINAL, TaskStatus
from controller.domain.refs import ExecutorRef
from controller.domain.spec import TaskSpec
from controller.lineage import cache as lineage_cache
from controller.lineage import models as lineage_models
from controller.lineage.capture import build_record
from controller.lineage.projection import catch_up
from controller.logs.archive import archive_task_log
from controller.logs.file_sink import FileLogReader
from controller.logs.reconcile_records import enqueue_check as enqueue_log_check
from controller.logs.spool_recovery import keep_draining
from controller.logs.status_events import status_event
from controller.ports import LAUNCH_FILE, Executor, ExecutorState, Launch, LogReader, Tracking
from controller.scheduling.admission import Admission, AdmitAll, Admitter
from controller.store.database import Database
from controller.store.schema import (
    ArtifactRow,
    ControllerStateRow,
    LineageEventRow,
    LineageRecordRow,
    RunRow,
    TaskInputRow,
    TaskRow,
    TaskSecretRow,
    utcnow,
)
from controller.store.work_signal import WorkSignal

log = logging.getLogger("tracectl.supervisor")

DEADLINE_SLACK_S = 30.0
LAUNCH_THREADS = 128  # attempts started at once: mostly waiting (API server, MLflow), cheap


@dataclass
class Outcome:
    status: TaskStatus
    reason: str | None
    exit_code: int | None
    result: dict[str, Any]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        executor: Executor | None = None,
        tracking: Tracking | None = None,
        admitter: Admitter | None = None,
        log_reader: LogReader | None = None,
    ) -> None:
        self.settings = settings
        self._store = db  # unfenced; self.db is the current term's fenced view of it
        self.db = db
        self.executor = executor or backends.executor(settings)
        self.tracking = tracking or backends.tracking(settings)
        self.admitter: Admitter = admitter or AdmitAll()
        self.log_reader = log_reader or backends.log_reader(settings)
        # The archive always reads the file record, whatever reader the API uses.
        self.log_record = FileLogReader(settings)
        self.store = backends.artifact_store(settings)
        self.events = backends.status_publisher(settings)
        self._stop = threading.Event()
        self._cancelling: set[str] = set()
        self._last_heartbeat = 0.0
        self._last_anchor = time.monotonic()
        self.wake = threading.Event()
        # An executor that sees its attempts end (the local warm runner) ends the watch
        # loop's wait at once: exit -> `succeeded` without waiting for the next round.
        self.attempt_ended = threading.Event()
        self.on_task_end: Callable[[], None] = lambda: None  # after a task's end is written
        notify_exit = getattr(self.executor, "notify_exit", None)
        if notify_exit is not None:
            notify_exit(self.attempt_ended.set)
        # Admitted attempts (already STARTING in the store) are launched on these threads;
        # _watch_active leaves an attempt in flight alone instead of recovering it.
        self._launcher = ThreadPoolExecutor(LAUNCH_THREADS, thread_name_prefix="tracectl-launch")
        self._launching: set[str] = set()
        self._pending = PendingTasks()
        # An MLflow SQLite store takes one writer: its lazy table creation races, and parallel
        # writers lock each other out. A tracking server takes parallel launches.
        self._tracking_turn: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.tracking.uri.startswith("sqlite") else contextlib.nullcontext()
        )
        self._threads: list[threading.Thread] = []

    # -- loop ---------------------------------------------------------------------------
    def lead(self, fence: Fence) -> None:
        """Run the loops for FENCE's term (core/leadership.py): each of its writes is fenced,
        so once a newer leader took over, none of them commits."""
        self.db = self._store.guarded(fence.check)
        stop = self._stop = threading.Event()
        self._launcher = ThreadPoolExecutor(LAUNCH_THREADS, thread_name_prefix="tracectl-launch")
        self._launching.clear()
        # Runners that died, or gave up while Kafka was away, leave spools behind; ship them,
        # now and while this controller leads.
        threading.Thread(
            target=keep_draining,
            args=(self.settings, stop),
            name="tracectl-spool-recovery",
            daemon=True,
        ).start()
        # A submit on another replica wakes admission through the store (store/work_signal.py).
        threading.Thread(
            target=WorkSignal(self._store).listen,
            args=(self.wake.set, stop),
            name="tracectl-work-signal",
            daemon=True,
        ).start()
        threading.Thread(target=self._prewarm, name="tracectl-prewarm", daemon=True).start()
        self.reconcile()
        # Two loops: admission answers each submit at once, and never waits behind the
        # inspection of every active attempt, which keeps its own pace on its own thread.
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(self.admit, self._wait_for_work, stop),
                name="tracectl-supervisor",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self.watch, self._wait_for_an_end, stop),
                name="tracectl-watch",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _prewarm(self) -> None:
        """Start, in the background, what the first task would otherwise wait for: the warm
        runner, MLflow's import and store (8-38 s on a busy machine before this)."""
        for part in (self.executor, self.tracking):
            prewarm = getattr(part, "prewarm", None)
            if prewarm is None:
                continue
            try:
                with self._tracking_turn if part is self.tracking else contextlib.nullcontext():
                    prewarm()
            except Exception:  # the first launch tries again, and says what failed
                log.warning("could not prewarm %s", type(part).__name__, exc_info=True)

    def follow(self) -> None:
        """End this replica's term: the loops stop, and launches not begun stay STARTING in
        the store for the next leader's reconcile()."""
        self._stop.set()
        self.wake.set()
        self.attempt_ended.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        self._launcher.shutdown(wait=True, cancel_futures=True)

    def start(self) -> None:
        """Lead without an election (one supervisor, nothing else running): a term of its own."""
        self.lead(Fence(take_over(self._store, f"{self.settings.replica}:{os.getpid()}")))

    def alive(self) -> bool:
        """Both loops run."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def crashed(self) -> bool:
        """A loop of the current term ended (readiness); none run between terms."""
        return bool(self._threads) and not self.alive()

    def stop(self) -> None:
        self.follow()
        self.events.close()  # flush status events still queued for Kafka
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()  # stop background watches before the process (or the cluster) goes

    def _loop(
        self, step: Callable[[], None], pause: Callable[[float], object], stop: threading.Event
    ) -> None:
        while not stop.is_set():
            try:
                step()
            except Deposed:
                log.warning("a newer leader took over: %s stops", step.__name__)
                return
            except Exception:
                log.exception("supervisor %s failed; retrying", step.__name__)
            pause(self.settings.supervisor_interval_s)

    def _wait_for_work(self, timeout: float) -> None:
        self.wake.wait(timeout)  # a submit, or a finished attempt, ends the wait at once
        self.wake.clear()

    def _wait_for_an_end(self, timeout: float) -> None:
        self.attempt_ended.wait(timeout)
        self.attempt_ended.clear()

    def tick(self) -> None:
        """One round of both loops, in this thread (restart, tests)."""
        self.admit()
        self.watch()

    def admit(self) -> None:
        self._promote_pending()
        run_end.stop_services(self)  # before admission: an ended run starts no more services
        self._admit_and_launch()

    def watch(self) -> None:
        if self._watch_active():
            self.wake.set()  # leases were freed: admit the next tasks now
        self._heartbeat()
        self._anchor()

    def _anchor(self) -> None:
        if time.monotonic() - self._last_anchor < self.settings.anchor_interval_s:
            return
        self._last_anchor = time.monotonic()
        try:
            write_anchor(self.db, self.store)
        except Exception:
            log.warning("could not write a chain anchor; will retry", exc_info=True)

    # -- restart ------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Match the store against what really runs, after a (re)start."""
        adopted = relaunched = 0
        with self.db.read() as session:
            starting = [
                r.id
                for r in session.scalars(
                    select(TaskRow).where(TaskRow.status == TaskStatus.STARTING.value)
                )
            ]
        for task_id in starting:
            outcome = self._recover_starting(task_id)
            adopted += outcome == "adopted"
            relaunched += outcome == "relaunched"
        with self.db.write() as session:
            state = session.get(ControllerStateRow, "last_start") or ControllerStateRow(
                key="last_start", value={}
            )
            state.value = {
                "at": utcnow().isoformat(),
                "pid": os.getpid(),
                "adopted": adopted,
                "relaunched": relaunched,
            }
            state.updated_at = utcnow()
            session.merge(state)
        self.tick()
        return {"adopted": adopted, "relaunched": relaunched}

    def _recover_starting(self, task_id: str) -> str | None:
        """A STARTING task with no executor reference: its launch was cut short (controller
        killed, or the store unreachable right after the executor started it). Adopt what
        the executor really runs, or launch the same attempt again."""
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.status != TaskStatus.STARTING.value or row.executor_ref:
                return None
            attempt = row.attempt
            launch = self._launch_of(session, row)
        ref = self.executor.find(launch)
        if ref is not None:
            try:  # a local runner may wait for its complete launch file
                self._complete(launch)
            except Exception:
                log.warning("could not complete the launch of %s", task_id, exc_info=True)
            self._mark_running(task_id, attempt, ref)
            return "adopted"
        self._start_attempt(task_id, attempt)
        return "relaunched"

    # -- pending -> queued --------------------------------------------------------------
    def _has(self, status: TaskStatus) -> bool:
        """Whether any task has STATUS: a read, so that an idle round takes no write lock."""
        with self.db.read() as session:
            return (
                session.scalar(select(TaskRow.id).where(TaskRow.status == status.value).limit(1))
                is not None
            )

    def _promote_pending(self) -> None:
        with self.db.read() as session:  # an idle round, or a blocked one, takes no write lock
            decided = self._pending.decided(session)
        if not decided:
            return
        with self.db.write() as session:
            for row in session.scalars(select(TaskRow).where(TaskRow.id.in_(decided))):
                self._promote_one(session, row)

    def _promote_one(self, session: Session, row: TaskRow) -> None:
        """Queue ROW once its upstream tasks allow, or cancel it when one of them broke
        (read again under the write lock: the round's read may be a moment old)."""
        waits = Upstream.of(row.resolved)
        ups = list(session.scalars(select(TaskRow).where(TaskRow.id.in_(waits.after))))
        broken = [u for u in ups if u.status in BROKEN]
        if broken:
            transitions.cancel_waiting(
                session, self.admitter, row, f"upstream task {broken[0].name!r} {broken[0].status}"
            )
        elif all(
            upstream_done(u.status, u.spec.get("mode") == "service", u.id in waits.fed) for u in ups
        ):
            transitions.promote(session, row)

    # -- queued -> starting -> running --------------------------------------------------
    def _admit_and_launch(self) -> None:
        if not self._has(TaskStatus.QUEUED):
            return
        admitted: list[tuple[str, int]] = []
        try:
            self._admit(admitted)
        except BaseException:
            self._launching.difference_update(task_id for task_id, _ in admitted)
            raise
        for task_id, attempt in admitted:
            self.publish_status(task_id, "admitted")
            self._launcher.submit(self._launch_in_background, task_id, attempt)

    def _admit(self, admitted: list[tuple[str, int]]) -> None:
        """Admit what the leases allow; ADMITTED gets (task, attempt) of each, marked as in
        flight before the commit, or the watch loop would take a STARTING attempt without
        a reference for a launch cut short."""
        with self.db.write() as session:
            queued = list(
                session.scalars(
                    select(TaskRow)
                    .where(TaskRow.status == TaskStatus.QUEUED.value)
                    .order_by(TaskRow.priority.desc(), TaskRow.queued_at, TaskRow.id)
                )
            )
            ready = [r for r in queued if r.not_before is None or r.not_before <= utcnow()]
            ended = run_end.ended_runs(session, {r.run_id for r in ready if run_end.is_service(r)})
            if ended:  # the inspection loop just finished their last jobs: no service starts
                ready = [r for r in ready if r.run_id not in ended or not run_end.is_service(r)]
                self.wake.set()  # the next round's stop_services() cancels them
            if not ready:
                return
            decisions = self.admitter.admit(session, ready)
            for row in ready:
                decision = decisions.get(row.id, Admission(False, "not considered"))
                if not decision.admitted:
                    row.reason = decision.reason
                    continue
                name_for = getattr(self.executor, "name_for", None)
                executor = name_for(row.spec.get("mode")) if name_for else self.executor.name
                timeout = row.spec.get("timeout_s")
                deadline = (
                    utcnow() + timedelta(seconds=timeout + DEADLINE_SLACK_S) if timeout else None
                )
                if not transitions.admit(session, row, executor, decision, deadline):
                    # changed since read (cancelled): the leases just granted go back
                    self.admitter.release(session, row.id, "no longer queued")
                    continue
                admitted.append((row.id, row.attempt))
                self._launching.add(row.id)

    def _launch_in_background(self, task_id: str, attempt: int) -> None:
        try:
            self._start_attempt(task_id, attempt)
        finally:
            self._launching.discard(task_id)
            # A short command may have ended before its reference was stored: its exit's
            # wake-up found the attempt in flight, so look again now, not at the next round.
            self.attempt_ended.set()

    def _start_attempt(self, task_id: str, attempt: int) -> None:
        launch: Launch | None = None
        try:
            with self.db.read() as session:
                row = session.get(TaskRow, task_id)
                assert row is not None
                if row.status != TaskStatus.STARTING.value or row.attempt != attempt:
                    return
                launch = self._launch_of(session, row)
            launch = replace(launch, completion=_Once(self._complete, launch))
            # The tracking run is made alongside the runner's start: the executor waits for
            # it only at the step that needs it (the local runner: right before the command).
            self._launcher.submit(_quietly, launch.completed)
            if launch.spec.cache and self._reuse_cached(task_id, attempt, launch.completed()):
                return
            ref = self.executor.launch(launch)
            launch.completed()  # an executor that never needed it: the run and file exist
        except Exception as exc:
            log.exception("launch of %s attempt %s failed", task_id, attempt)
            if launch is not None:  # the tracking run made alongside is closed with it
                with contextlib.suppress(Exception):
                    launch.completed()
            self._finish(
                task_id, attempt, Outcome(TaskStatus.FAILED, f"launch failed: {exc}", None, {})
            )
            return
        self._mark_running(task_id, attempt, ref)

    def _reuse_cached(self, task_id: str, attempt: int, launch: Launch) -> bool:
        """Finish the attempt from an earlier identical task's outputs, if there is one."""
        key = lineage_cache.key_of_launch(launch.document)
        catch_up(self.db)  # the cache index is a projection of the lineage event log
        with self.db.read() as session:
            mine = session.get(TaskRow, task_id)
            hit = lineage_cache.lookup(
                session, key, exclude_task=task_id, team=mine.team if mine else None
            )
        if hit is None:
            return False
        self._finish(
            task_id,
            attempt,
            Outcome(
                TaskStatus.SUCCEEDED,
                f"cached from run {hit.run_id}",
                0,
                {"outputs": hit.outputs, "exit_code": 0},
            ),
            lambda session, row: lineage_cache.record_hit(session, row, hit),
        )
        return True

    def _mark_running(self, task_id: str, attempt: int, ref: ExecutorRef) -> None:
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            if row is None or not transitions.start(session, row, attempt, ref):
                return
        self.publish_status(task_id, "started")

    def _ensure_tracking_run(self, task_id: str, attempt: int) -> tuple[str, str]:
        """(experiment id, run id) of the attempt's tracking run, made once per attempt."""
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None
            run = session.get(RunRow, row.run_id)
            assert run is not None
            if row.resolved.get("mlflow_attempt") == attempt and row.mlflow_run_id:
                return row.mlflow_experiment_id or "", row.mlflow_run_id
            spec, resolved = row.spec, row.resolved
            tags = {
                "mlflow.runName": f"{row.name}#{attempt}",
                "mlflow.user": row.team,
                "mlflow.source.type": "JOB",
                "tracectl.run_id": run.id,
                "tracectl.task_id": row.id,
                "tracectl.task_name": row.name,
                "tracectl.attempt": str(attempt),
            }
            if spec.get("code"):
                tags["mlflow.source.name"] = spec["code"]["repo"]
                tags["mlflow.source.git.commit"] = resolved.get("commit", "")
                tags["mlflow.source.git.repoURL"] = spec["code"]["repo"]
            if run.airflow_dag_id:
                tags["airflow.dag_id"] = run.airflow_dag_id
            if run.airflow_run_id:
                tags["airflow.run_id"] = run.airflow_run_id
            if spec.get("image"):
                tags["tracectl.image"] = spec["image"]
            experiment = run.pipeline
            params = spec.get("params", {})
            datasets = [
                {
                    "name": d["path"],
                    "digest": d["md5"],
                    "context": "input",
                    "source": f"dvc://{spec['code']['repo']}@{d['rev']}/{d['path']}",
                }
                for d in resolved.get("data", [])
            ]
        experiment_id, mlflow_run_id = self.tracking.start_run(
            experiment, f"{row.name}#{attempt}", tags, params
        )
        self.tracking.log_dataset_inputs(mlflow_run_id, datasets)
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None
            row.mlflow_experiment_id = experiment_id
            row.mlflow_run_id = mlflow_run_id
            row.resolved = {**row.resolved, "mlflow_attempt": attempt}
        return experiment_id, mlflow_run_id

    def _complete(self, launch: Launch) -> Launch:
        """What Launch.completed() fills in: the attempt's tracking run, then its launch file."""
        with self._tracking_turn:
            experiment_id, run_id = self._ensure_tracking_run(launch.task_id, launch.attempt)
        env = {**launch.env, **dict(zip(LATE_ENV, (experiment_id, run_id), strict=True))}
        done = replace(launch, document=launch.document.with_env(env), completion=None)
        done.write()  # a runner started before it waits for this file
        return done

    def workspace(self, task_id: str, attempt: int) -> Path:
        return self.settings.workspaces / task_id / str(attempt)

    def _launch_of(self, session: Session, row: TaskRow) -> Launch:
        run = session.get(RunRow, row.run_id)
        assert run is not None
        secrets = session.get(TaskSecretRow, row.id)
        spec = dict(row.spec)
        spec["env"] = {**spec.get("env", {}), **(secrets.env if secrets else {})}
        env = {
            "TRACECTL_RUN_ID": run.id,
            "TRACECTL_TASK_ID": row.id,
            "TRACECTL_TASK_NAME": row.name,
            "TRACECTL_ATTEMPT": str(row.attempt),
            "MLFLOW_TRACKING_URI": self.tracking.uri,
            "MLFLOW_RUN_ID": row.mlflow_run_id or "",
            "MLFLOW_EXPERIMENT_ID": row.mlflow_experiment_id or "",
            **self._admission_env(session, row),
        }
        if spec.get("models"):  # the declared model versions, which the lineage names
            env["TRACECTL_MODELS"] = json.dumps(spec["models"])
        document = LaunchDocument(
            run_id=run.id,
            task_id=row.id,
            task_name=row.name,
            attempt=row.attempt,
            spec=TaskSpec.model_validate(spec),
            resolved=Resolution(
                commit=row.resolved.get("commit"),
                data=row.resolved.get("data", []),
                environment=row.resolved.get("environment"),
            ),
            inputs=self._inputs_of(session, row),
            env=env,
            late_env=list(LATE_ENV),
            labels=LaunchLabels(
                dag_id=run.airflow_dag_id or "",
                airflow_run_id=run.airflow_run_id or "",
                pipeline=run.pipeline,
                team=row.team,
            ),
            runtime=runtime_settings(self.settings),
        )
        return Launch(document, self.workspace(row.id, row.attempt))

    @staticmethod
    def _admission_env(session: Session, row: TaskRow) -> dict[str, str]:
        admission = transitions.admission_of(session, row.id, row.attempt)
        if admission is None:  # admitted before the attempts table: in the task's JSON
            return dict(row.resolved.get("attempt_env", {}))
        return dict(admission.env)

    @staticmethod
    def _inputs_of(session: Session, row: TaskRow) -> list[InputArtifact]:
        """The resolved inputs, an upstream task's output by the artifact it stored."""
        inputs = []
        for item in row.resolved.get("inputs", []):
            if "task" not in item:
                inputs.append(InputArtifact.model_validate(item))
                continue
            artifact = session.scalar(
                select(ArtifactRow).where(
                    ArtifactRow.task_id == item["task"], ArtifactRow.path == item["output"]
                )
            )
            if artifact is None:
                raise RuntimeError(f"upstream output {item['output']} is not stored")
            inputs.append(
                InputArtifact(
                    path=item["path"],
                    sha256=artifact.sha256,
                    uri=artifact.uri,
                    size=artifact.size,
                    produced_by_task=artifact.task_id,
                    produced_by_run=artifact.run_id,
                )
            )
        return inputs

    # -- running -> finished --------------------------------------------------------------
    def _watch_active(self) -> bool:
        """Inspect every active attempt; True when one of them ended."""
        ended = False
        with self.db.read() as session:  # the columns it needs: not each spec, every round
            active: list[tuple[str, int, ExecutorRef | None, bool, datetime | None]] = list(
                session.execute(
                    select(
                        TaskRow.id,
                        TaskRow.attempt,
                        TaskRow.executor_ref,
                        TaskRow.cancel_requested,
                        TaskRow.deadline,
                    ).where(TaskRow.status.in_(ACTIVE))
                )
            )
        for task_id, attempt, ref, cancel, deadline in active:
            if ref is None:
                if task_id not in self._launching:  # not in flight: this launch was cut off
                    self._recover_starting(task_id)
                continue
            state = self.executor.inspect(ref, self.workspace(task_id, attempt))
            if state.phase == "running":
                record_readiness(self.db, task_id, attempt, ref, state)
                if cancel or (deadline is not None and utcnow() > deadline):
                    self._cancel_async(task_id, ref)
                continue
            outcome = run_end.as_stopped(self.db, task_id, self._outcome(state, cancel))
            self._finish(task_id, attempt, outcome)
            self.executor.cleanup(ref)
            ended = True
        return ended

    def _outcome(self, state: ExecutorState, cancel_requested: bool) -> Outcome:
        result = dict(state.result or {})
        if cancel_requested:
            return Outcome(TaskStatus.CANCELLED, "cancelled on request", state.exit_code, result)
        if state.phase == "exited" and state.exit_code == 0 and not state.reason:
            return Outcome(TaskStatus.SUCCEEDED, None, 0, result)
        reason = state.reason or f"exited with code {state.exit_code}"
        return Outcome(TaskStatus.FAILED, reason, state.exit_code, result)

    def _cancel_async(self, task_id: str, ref: ExecutorRef) -> None:
        if task_id in self._cancelling:
            return
        self._cancelling.add(task_id)

        def run() -> None:
            try:
                self.executor.cancel(ref, self.settings.cancel_grace_s)
            finally:
                self._cancelling.discard(task_id)
                self.wake.set()

        threading.Thread(target=run, name=f"cancel-{task_id}", daemon=True).start()

    def _finish(
        self,
        task_id: str,
        attempt: int,
        outcome: Outcome,
        also: Callable[[Session, TaskRow], None] | None = None,
    ) -> None:
        """End ATTEMPT with OUTCOME (or queue the next one); ALSO writes with the end."""
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.attempt != attempt or row.status in TERMINAL:
                return  # ended already: nothing to close or archive again
            mlflow_run_id = row.mlflow_run_id
            run_id = row.run_id
        # The tracking store and the log archive are independent: both before the end is
        # written (docs/architecture.md, what an end promises), side by side.
        models: list[dict[str, str]] = []
        side = [
            threading.Thread(
                target=self._close_tracking,
                args=(mlflow_run_id, outcome.status),
                name=f"tracectl-close-{task_id}",
                daemon=True,
            ),
            threading.Thread(
                target=lambda: models.extend(self._models_of(mlflow_run_id, outcome)),
                name=f"tracectl-models-{task_id}",
                daemon=True,
            ),
        ]
        for thread in side:
            thread.start()
        log_summary = self._archive_log(run_id, task_id, attempt)
        for thread in side:
            thread.join()
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.attempt != attempt:
                return
            retry = (
                outcome.status == TaskStatus.FAILED
                and row.attempt < row.max_attempts
                and not row.cancel_requested
            )
            if not self._end_attempt(session, row, outcome, retry):
                return  # another path ended or requeued it first
            if also is not None:
                also(session, row)
            self._record_attempt(session, row, outcome, log_summary)
            enqueue_log_check(session, run_id, task_id, attempt, log_summary)
            session.add_all(lineage_models.model_events(run_id, task_id, models))
        if not retry:
            self.on_task_end()  # its long polls (/wait) return now, not at their next tick
        self.publish_status(
            task_id,
            "retrying" if retry else outcome.status.value,
            lineage={
                "outputs": len(outcome.result.get("outputs") or []),
                "log_lines": log_summary.get("lines"),
                "log_archive": log_summary["archive"].get("uri"),
            },
        )

    def _close_tracking(self, mlflow_run_id: str | None, status: TaskStatus) -> None:
        """Close the attempt's tracking run (FINISHED, FAILED, KILLED)."""
        if not mlflow_run_id:
            return
        try:
            with self._tracking_turn:
                self.tracking.finish_run(mlflow_run_id, status.value)
        except Exception:
            log.warning("could not close MLflow run %s", mlflow_run_id, exc_info=True)

    def _models_of(self, mlflow_run_id: str | None, outcome: Outcome) -> list[dict[str, str]]:
        """The model versions a succeeded attempt registered: a read, beside the close (the
        script registered them before it exited)."""
        if outcome.status != TaskStatus.SUCCEEDED:
            return []
        return lineage_models.registered_versions(self.tracking, mlflow_run_id)

    def _archive_log(self, run_id: str, task_id: str, attempt: int) -> dict[str, Any]:
        """The log's summary (lines, checksum) with where its archived copy is."""
        log_summary = self.log_record.summary(run_id, task_id, attempt)
        try:
            log_summary["archive"] = archive_task_log(
                self.settings, self.store, run_id, task_id, attempt
            )
        except Exception as exc:
            log.warning("archiving the log of %s failed", task_id, exc_info=True)
            log_summary["archive"] = {"error": str(exc)}
        return log_summary

    def _end_attempt(self, session: Session, row: TaskRow, outcome: Outcome, retry: bool) -> bool:
        if not retry:
            return transitions.finish(
                session, self.admitter, row, outcome.status, outcome.reason, outcome.exit_code
            )
        backoff = self.settings.retry_backoff_s * 2 ** (row.attempt - 1)
        return transitions.requeue(
            session,
            self.admitter,
            row,
            f"attempt {row.attempt} failed ({outcome.reason}); retrying",
            outcome.exit_code,
            utcnow() + timedelta(seconds=backoff),
        )

    def publish_status(self, task_id: str, status: str, **extra: Any) -> None:
        """Publish a status event; a publishing failure never blocks the lifecycle."""
        if not self.events.publishes:
            return
        try:
            with self.db.read() as session:
                row = session.get(TaskRow, task_id)
                run = session.get(RunRow, row.run_id) if row else None
                if row is None or run is None:
                    return
                event = status_event(row, run, status, **extra)
            self.events.publish(event)
        except Exception:
            log.warning("could not publish status %s of %s", status, task_id, exc_info=True)

    def _record_attempt(
        self, session: Session, row: TaskRow, outcome: Outcome, log_summary: dict[str, Any]
    ) -> None:
        run = session.get(RunRow, row.run_id)
        assert run is not None
        row.finished_at = utcnow()
        inputs = self._launch_inputs(row)
        for item in inputs:
            session.add(
                TaskInputRow(
                    task_id=row.id,
                    sha256=item["sha256"],
                    uri=item["uri"],
                    path=item["path"],
                    produced_by_task=item.get("produced_by_task"),
                )
            )
            session.add(LineageEventRow.of(InputUsed.model_validate(item), row.run_id, row.id))
        for output in outcome.result.get("outputs") or []:
            session.add(
                ArtifactRow(
                    sha256=output["sha256"],
                    uri=output["uri"],
                    size=output["size"],
                    media_type=output["media_type"],
                    path=output["path"],
                    task_id=row.id,
                    run_id=row.run_id,
                )
            )
            session.add(
                LineageEventRow.of(OutputProduced.model_validate(output), row.run_id, row.id)
            )
        # leases are not copied into the record: views read them from the leases table
        record = build_record(
            row,
            run,
            outcome.status.value,
            outcome.result,
            inputs,
            self.tracking.uri if row.mlflow_run_id else None,
            log_summary,
        )
        record_json = record.model_dump(mode="json")
        record_json["reason"] = outcome.reason
        existing = session.get(LineageRecordRow, row.id)
        if existing is None:
            session.add(
                LineageRecordRow(
                    task_id=row.id, run_id=row.run_id, attempt=row.attempt, record=record_json
                )
            )
        else:
            existing.attempt, existing.record = row.attempt, record_json
            existing.updated_at = utcnow()
        session.add(
            LineageEventRow.of(
                TaskCompleted(
                    attempt=row.attempt,
                    status=outcome.status.value,
                    exit_code=outcome.exit_code,
                    reason=outcome.reason,
                ),
                row.run_id,
                row.id,
            )
        )

    def _launch_inputs(self, row: TaskRow) -> list[dict[str, Any]]:
        launch_file = self.workspace(row.id, row.attempt) / LAUNCH_FILE
        if not launch_file.exists():
            return []
        try:
            return LaunchDocument.read(launch_file).input_items()
        except ValidationError:  # written by a controller before the typed document
            inputs: list[dict[str, Any]] = json.loads(launch_file.read_text()).get("inputs", [])
            return inputs

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < self.settings.lease_ttl_s / 3:
            return
        self._last_heartbeat = time.monotonic()
        with self.db.write() as session:
            ids = [r.id for r in session.scalars(select(TaskRow).where(TaskRow.status.in_(ACTIVE)))]
            if ids:
                self.admitter.heartbeat(session, ids)


class _Once:
    """FN(LAUNCH), made once: a second caller waits for the first and gets its result, or
    its error (a tracking server that failed once is not asked again for this launch)."""

    def __init__(self, fn: Callable[[Launch], Launch], launch: Launch) -> None:
        self.fn, self.launch = fn, launch
        self._lock = threading.Lock()
        self._done: Launch | None = None
        self._error: Exception | None = None

    def __call__(self) -> Launch:
        with self._lock:
            if self._done is None and self._error is None:
                try:
                    self._done = self.fn(self.launch)
                except Exception as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            assert self._done is not None
            return self._done


def _quietly(fn: Callable[[], object]) -> None:
    """FN, its failure left to the caller that needs its result (it gets the same error)."""
    try:
        fn()
    except Exception:
        log.debug("an early start failed; its caller gets the error", exc_info=True)
