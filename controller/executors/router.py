"""One Executor in front of several, chosen per task by its mode (job, service, external).

The supervisor keeps talking to a single Executor; launches go by the task's
`spec.mode`, and everything after (inspect, cancel, cleanup) by the mode of the reference
the chosen executor returned (controller/domain/refs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from controller.config import Settings
from controller.domain.refs import ExecutorRef
from controller.ports import Executor, ExecutorState, Launch, LogSinkFactory


class UnroutableTask(ValueError):
    pass


class ModeRouter:
    name = "router"

    def __init__(self, executors_by_mode: Mapping[str, Executor]) -> None:
        if "job" not in executors_by_mode:
            raise ValueError("the router needs a 'job' executor: it is the default mode")
        self.executors = dict(executors_by_mode)
        self.name = "+".join(sorted({e.name for e in self.executors.values()}))

    def _for_mode(self, mode: str | None) -> Executor:
        executor = self.executors.get(mode or "job")
        if executor is None:
            raise UnroutableTask(
                f"no executor handles mode {mode!r}; configured: {sorted(self.executors)}"
            )
        return executor

    def _for_launch(self, launch: Launch) -> Executor:
        return self._for_mode(launch.spec.mode.value)

    def _for_ref(self, ref: ExecutorRef) -> Executor:
        return self._for_mode(ref.mode)

    def close(self) -> None:
        """Stop what the executors run in the background (watches, log followers)."""
        for executor in {id(e): e for e in self.executors.values()}.values():
            close = getattr(executor, "close", None)
            if close is not None:
                close()

    def notify_exit(self, callback: Callable[[], None]) -> None:
        """Pass CALLBACK on to the executors that report their attempts' ends."""
        for executor in {id(e): e for e in self.executors.values()}.values():
            notify = getattr(executor, "notify_exit", None)
            if notify is not None:
                notify(callback)

    def prewarm(self) -> None:
        """Start what the executors' first launch would otherwise wait for."""
        for executor in {id(e): e for e in self.executors.values()}.values():
            prewarm = getattr(executor, "prewarm", None)
            if prewarm is not None:
                prewarm()

    def name_for(self, mode: str | None) -> str:
        """The name of the executor that runs tasks of MODE (recorded on the task)."""
        return self._for_mode(mode).name

    def launch(self, launch: Launch) -> ExecutorRef:
        return self._for_launch(launch).launch(launch)

    def find(self, launch: Launch) -> ExecutorRef | None:
        return self._for_launch(launch).find(launch)

    def inspect(self, ref: ExecutorRef, workspace: Path) -> ExecutorState:
        return self._for_ref(ref).inspect(ref, workspace)

    def cancel(self, ref: ExecutorRef, grace_s: float) -> None:
        self._for_ref(ref).cancel(ref, grace_s)

    def cleanup(self, ref: ExecutorRef) -> None:
        self._for_ref(ref).cleanup(ref)


def routed(
    settings: Settings, job_executor: Executor, log_sinks: LogSinkFactory | None = None
) -> ModeRouter:
    """The configured executor for jobs and services; HTTP calls for `mode: external`."""
    from controller.executors.external import ExternalExecutor

    return ModeRouter(
        {
            "job": job_executor,
            "service": job_executor,
            "external": ExternalExecutor(settings, log_sinks=log_sinks),
        }
    )
