"""The embedded default executor: each attempt is a detached runner process.

The runner starts in a new session so it survives a controller restart; the controller
finds it again by PID plus process start time (a reused PID is never mistaken for it).
A `mode: service` task gets a loopback port in env PORT and a URL once it listens
(controller/executors/local_service.py). Runners are forked by a warm runner process
(controller/executors/local_warm.py) unless `TRACECTL_LOCAL_WARM_RUNNER=false`; a runner
it cannot make is started as a new interpreter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from controller.config import Settings, runner_environ
from controller.domain.launch import LAUNCH_COMPLETE_SIGNAL
from controller.domain.refs import ExecutorRef, LocalRef, ServiceRef
from controller.executors import local_service
from controller.executors.external import Registry
from controller.executors.local_warm import WarmRunner
from controller.ports import ExecutorState, Launch, LogSinkFactory

log = logging.getLogger(__name__)

RUNNER_MODULE = "controller.runtime.runner"
SERVICE_STOP_GRACE_S = 2.0


def _local(ref: ExecutorRef) -> LocalRef | ServiceRef:
    if not isinstance(ref, LocalRef | ServiceRef):
        raise TypeError(f"the local executor was handed a {ref.kind!r} reference")
    return ref


def _process(ref: LocalRef | ServiceRef) -> psutil.Process | None:
    if ref.pid is None or ref.create_time is None:
        return None  # a runner found ended: its PID may belong to another process by now
    try:
        proc = psutil.Process(ref.pid)
        if abs(proc.create_time() - ref.create_time) > 0.5:
            return None  # the PID now belongs to another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _forked_runner(pid_file: Path, workspace: Path) -> psutil.Process | None:
    """The live runner whose PID PID_FILE holds, if that process works in WORKSPACE."""
    try:
        proc = psutil.Process(int(pid_file.read_text().strip()))
        if proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()) == workspace:
            return proc
    except (OSError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        os.waitpid(pid, os.WNOHANG)


class LocalExecutor:
    name = "local"

    def __init__(self, settings: Settings, log_sinks: LogSinkFactory | None = None) -> None:
        self.settings = settings  # the runner process writes the log itself: no sink here
        # No credential of the controller's reaches a runner: the external systems' neither.
        self.withheld = Registry.load(settings.external_systems).credential_env()
        self._on_exit: Callable[[], None] = lambda: None
        self.warm = (
            WarmRunner(runner_environ(os.environ, self.withheld), lambda: self._on_exit())
            if settings.local_warm_runner
            else None
        )

    def notify_exit(self, callback: Callable[[], None]) -> None:
        """Call CALLBACK when a runner ends (as soon as the warm runner sees it)."""
        self._on_exit = callback

    def prewarm(self) -> None:
        """Start the warm runner now (its imports take seconds on a busy machine)."""
        if self.warm is not None:
            self.warm.start()

    def launch(self, launch: Launch) -> LocalRef | ServiceRef:
        # The runner starts on the pending launch file and prepares (checkout, environment,
        # data) while the tracking run is made; it waits for the complete file before the
        # command, which alone needs MLFLOW_RUN_ID.
        launch.write_pending()
        # The runner inherits the controller's environment (PATH, the runtime's S3 keys...),
        # less what configures the controller: a copy, not a reading of settings.
        env = {**runner_environ(os.environ, self.withheld), **launch.env}
        port = (
            local_service.chosen_port(launch.spec) if local_service.is_service(launch.spec) else 0
        )
        if port:
            env["PORT"] = str(port)  # the runner passes it on; a PORT in the spec's env wins
        pid, create_time = self._start_runner(launch, env)
        ref = self._ref(pid, port, create_time)
        try:
            launch.completed()
        except Exception:
            self.cancel(ref, 0)  # it would wait for a launch file that never comes
            raise
        # A fork of the warm runner waits for the signal (it cannot end before it, so the
        # PID is still its own); a runner started cold reads the file again on its own.
        if create_time is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, LAUNCH_COMPLETE_SIGNAL)
        return ref

    def _start_runner(self, launch: Launch, env: dict[str, str]) -> tuple[int, float | None]:
        """The runner's PID, and its start time when it is a fork of the warm runner (read by
        the warm runner: a fork may already have ended); None for a runner started cold."""
        out = launch.workspace / "runner.out"
        # A service starts cold: find() reads its PORT from the environment it was exec'd with.
        if self.warm is not None and not local_service.is_service(launch.spec):
            try:
                return self.warm.spawn(launch.launch_file, launch.workspace, env, out)
            except OSError:
                log.exception("the warm runner failed; starting this runner cold")
        with out.open("ab") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", RUNNER_MODULE, str(launch.launch_file)],
                cwd=launch.workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return proc.pid, None

    def _ref(
        self, pid: int, port: int | None, create_time: float | None = None
    ) -> LocalRef | ServiceRef:
        """The reference of runner PID; of a service's when it serves on PORT."""
        process: dict[str, int | float | str] = {
            "pid": pid,
            "create_time": create_time or psutil.Process(pid).create_time(),
            "host": socket.gethostname(),
        }
        if not port:
            return LocalRef.model_validate(process)
        return local_service.service_ref(process, port, self.settings.service_ready_timeout_s)

    def find(self, launch: Launch) -> LocalRef | ServiceRef | None:
        """The runner of LAUNCH: running (by its command line), or ended since it started (it
        wrote runner.pid first thing; inspect() then reads its result.json, or reports it
        missing). None only when no runner of it got that far: launching again is safe."""
        needle = str(launch.launch_file)
        for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
            cmdline = proc.info.get("cmdline") or []
            if RUNNER_MODULE in cmdline and needle in cmdline:
                return self._ref(proc.info["pid"], self._found_port(launch, proc))
        started = launch.workspace / "runner.pid"
        forked = _forked_runner(started, launch.workspace)
        if forked is not None:  # a fork of the warm runner has the warm runner's cmdline
            return self._ref(forked.pid, None)
        if started.exists():
            # no pid: nothing may signal or reap a number the OS may have given another
            return LocalRef(ended_runner_pid=started.read_text().strip(), host=socket.gethostname())
        return None

    @staticmethod
    def _found_port(launch: Launch, proc: psutil.Process) -> int | None:
        """The port of a service's runner found after a restart: the PORT it was started
        with."""
        if not local_service.is_service(launch.spec):
            return None
        port = (proc.info.get("environ") or {}).get("PORT")
        return int(port) if port else None

    def inspect(self, ref: ExecutorRef, workspace: Path) -> ExecutorState:
        runner = _local(ref)
        result_file = workspace / "result.json"
        if result_file.exists():
            result = json.loads(result_file.read_text())
            return ExecutorState("exited", result.get("exit_code"), result.get("reason"), result)
        if _process(runner) is not None:
            if isinstance(runner, ServiceRef):
                return local_service.readiness(runner)
            return ExecutorState("running")
        if result_file.exists():  # written between the two checks above
            return self.inspect(ref, workspace)
        return ExecutorState("missing", reason="the runner process ended without a result")

    def cancel(self, ref: ExecutorRef, grace_s: float) -> None:
        runner = _local(ref)
        proc = _process(runner)
        if proc is None:
            return
        self._signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if _process(runner) is None:
                return
            time.sleep(0.05)
        self._signal_group(proc.pid, signal.SIGKILL)

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(pid, sig)  # the runner leads its own process group

    def close(self) -> None:
        if self.warm is not None:
            self.warm.close()  # its runners live on

    def cleanup(self, ref: ExecutorRef) -> None:
        runner = _local(ref)
        if isinstance(runner, ServiceRef):
            # A service failed for not getting ready is still up: stop it with its task.
            self.cancel(runner, SERVICE_STOP_GRACE_S)
        if runner.pid is not None:
            _reap(runner.pid)
