"""The task runner: `python -m controller.runtime.runner LAUNCH_FILE`.

Runs one attempt of one task in its workspace, detached from the controller so that a
controller restart does not kill it. It writes `result.json` (atomically) when done; the
controller reads it. Every line the command prints goes to the configured log sink.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from controller import backends
from controller.config import Settings, task_environ
from controller.domain.environments import BuiltEnvironment
from controller.domain.launch import LAUNCH_COMPLETE_SIGNAL, LaunchDocument
from controller.ports import ArtifactStore, LogLine, LogSink
from controller.runtime import code, data, data_revs, env_build, env_resolve, limits
from controller.runtime.outputs import OutputError, collect_outputs, place_inputs

KILL_GRACE_S = 5.0
# A controller restarted meanwhile completes the launch when it adopts this runner.
COMPLETE_LAUNCH_WAIT_S = 600.0


class SetupError(RuntimeError):
    pass


def _completion_signalled() -> bool:
    """Whether the controller signals the complete launch file: a fork of the warm runner,
    which blocks the signal so that it waits, pending, until taken."""
    return LAUNCH_COMPLETE_SIGNAL in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def _pause(seconds: float) -> None:
    """Sleep up to SECONDS; a signalled runner wakes as soon as the launch file is complete."""
    if _completion_signalled():
        signal.sigtimedwait([LAUNCH_COMPLETE_SIGNAL], seconds)
    else:
        time.sleep(seconds)


def _take_completion_signals() -> None:
    """Unblock the signal before the command starts (it inherits the mask), and make a late
    one harmless here: a Python handler, which the command's exec resets to the default."""
    if _completion_signalled():
        signal.signal(LAUNCH_COMPLETE_SIGNAL, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [LAUNCH_COMPLETE_SIGNAL])


MAX_LINE_CHARS = 64 * 1024
REDACTED = "***"


class LineWriter:
    """Numbers lines from both streams in arrival order and hands them to the sink.

    Secret values are replaced before a line leaves the process, and a very long line is cut
    (with a marker) so one runaway print cannot swamp the sink.
    """

    def __init__(
        self,
        sink: LogSink,
        run_id: str,
        task_id: str,
        attempt: int,
        secrets: list[str] | None = None,
    ) -> None:
        self.sink = sink
        self.ids = (run_id, task_id, attempt)
        self.seq = 0
        self.lock = threading.Lock()
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in (secrets or []) if len(s) >= 4}, key=len, reverse=True)

    def write(self, stream: str, message: str) -> None:
        for secret in self.secrets:
            message = message.replace(secret, REDACTED)
        if len(message) > MAX_LINE_CHARS:
            cut = len(message) - MAX_LINE_CHARS
            message = f"{message[:MAX_LINE_CHARS]} [tracectl: {cut} characters cut]"
        with self.lock:
            self.seq += 1
            run_id, task_id, attempt = self.ids
            self.sink.emit(
                LogLine(run_id, task_id, attempt, self.seq, stream, message, datetime.now(UTC))
            )

    def pump(self, stream: str, handle: IO[bytes]) -> None:
        for raw in iter(handle.readline, b""):
            # Non-UTF-8 bytes are kept visible (escaped) rather than dropped.
            self.write(stream, raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace"))
        handle.close()


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


class Runner:
    def __init__(self, launch_file: Path) -> None:
        self.launch_file = launch_file
        self.launch = LaunchDocument.read(launch_file)
        self.workspace = launch_file.parent
        self.settings = Settings.of_runtime(self.launch.runtime)
        self.child: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.env: BuiltEnvironment | None = None
        self._env_lock: env_build.KeyLock | None = None

    def _on_term(self, signum: int, _frame: object) -> None:
        self.cancelled = True
        if self.child and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        started = datetime.now(UTC)
        (self.workspace / "runner.pid").write_text(str(os.getpid()))
        launch = self.launch
        labels = {
            "run_id": launch.run_id,
            "task_id": launch.task_id,
            "attempt": str(launch.attempt),
            "task_name": launch.task_name,
            **{k: v for k, v in launch.labels.model_dump().items() if v},
        }
        sink = backends.recording_log_sink(self.settings, labels)
        spec_env = launch.spec.env
        secrets = [spec_env[k] for k in launch.spec.secret_env if k in spec_env]
        writer = LineWriter(sink, launch.run_id, launch.task_id, launch.attempt, secrets)
        result: dict[str, Any] = {"started_at": started.isoformat()}
        try:
            result.update(self._run(writer))
        except (SetupError, code.CodeError, data.DataError, OutputError) as exc:
            writer.write("system", f"tracectl: {exc}")
            result.update({"exit_code": None, "reason": str(exc)})
        except Exception as exc:  # the runner must always leave a result behind
            writer.write("system", f"tracectl: runner error: {exc!r}")
            result.update({"exit_code": None, "reason": f"runner error: {exc!r}"})
        finally:
            result["finished_at"] = datetime.now(UTC).isoformat()
            result["log_lines"] = writer.seq
            sink.close()
            write_json_atomic(self.workspace / "result.json", result)
        return 0

    def _run(self, writer: LineWriter) -> dict[str, Any]:
        launch = self.launch
        spec = launch.spec
        src = self.workspace / "src"
        out: dict[str, Any] = {}
        commit = launch.resolved.commit
        if spec.code and commit:
            writer.write("system", f"tracectl: checking out {spec.code.repo} at {commit}")
            code.checkout(spec.code.repo, commit, src)
        else:
            src.mkdir(parents=True, exist_ok=True)
        store = backends.artifact_store(self.settings)
        self.env = self._environment(writer, src)
        out["environment"] = self._env_record(store, self.env)
        if spec.data:
            out["data"] = self._fetch_data(writer, src)
        if launch.inputs:
            writer.write("system", f"tracectl: placing {len(launch.inputs)} input artifact(s)")
            place_inputs(store, launch.input_items(), src)
        self._await_complete_launch()
        exit_code, reason = self._execute(writer, src)
        out.update({"exit_code": exit_code, "reason": reason})
        if exit_code == 0 and not self.cancelled:
            out["outputs"] = self._store_outputs(writer, store, src)
        return out

    def _await_complete_launch(self) -> None:
        """The launch document with its late env values (MLFLOW_RUN_ID), which the controller
        writes while this runner prepares; a cancel ends the wait."""
        waited, pause = 0.0, 0.001
        try:
            while not self.launch.complete:
                if self.cancelled:
                    raise SetupError("cancelled before the command started")
                if waited > COMPLETE_LAUNCH_WAIT_S:
                    raise SetupError(
                        f"the controller did not complete the launch (its tracking run) in "
                        f"{COMPLETE_LAUNCH_WAIT_S:g}s"
                    )
                _pause(pause)
                waited += pause
                pause = min(pause * 2, 0.05)
                with contextlib.suppress(OSError, ValueError):  # replaced whole: read again
                    self.launch = LaunchDocument.read(self.launch_file)
        finally:
            _take_completion_signals()

    def _environment(self, writer: LineWriter, src: Path) -> BuiltEnvironment:
        """The task's environment, built or taken from the cache; held in use until exit."""
        # A task resolved before environments existed gets a bare interpreter.
        resolved = self.launch.resolved.environment or env_resolve.resolve(None, None)
        if resolved.kind == "image":
            raise SetupError("environment: an image environment needs the kubernetes executor")
        try:
            built, self._env_lock = env_build.acquire(
                resolved,
                src,
                self.settings.environments_dir,
                lambda message: writer.write("system", f"tracectl: {message}"),
            )
        except env_build.EnvironmentBuildError as exc:
            for line in str(exc).splitlines():
                writer.write("system", line)  # uv's own message, whole
            raise SetupError(str(exc).splitlines()[0]) from exc
        # self._env_lock stays held until the runner exits: collect() skips the environment.
        how = "built" if built.built else "cached"
        writer.write(
            "system",
            f"tracectl: environment {resolved.node} ({resolved.kind}, "
            f"{how} in {built.seconds * 1000:.0f} ms): python {built.python_version}, "
            f"{len(built.packages)} package(s)",
        )
        if built.built:
            env_build.collect(
                self.settings.environments_dir,
                self.settings.env_max_age_days * 86400,
                int(self.settings.env_max_gb * 2**30),
            )
        return built

    def _env_record(self, store: ArtifactStore, env: BuiltEnvironment) -> dict[str, Any]:
        """The environment as the lineage record keeps it; the package list is archived."""
        listing = self.workspace / "environment-packages.txt"
        listing.write_text("".join(f"{p}\n" for p in env.packages))
        stored = store.put_file(listing)
        return {
            **env.resolved.model_dump(mode="json"),
            "node": env.resolved.node,
            "python_version": env.python_version,
            "packages": env.packages,
            "packages_sha256": env.packages_sha256,
            "packages_uri": stored.uri,
            "interpreter": str(Path(env.prefix) / "bin" / "python"),
            "built": env.built,
            "seconds": round(env.seconds, 3),
        }

    def _fetch_data(self, writer: LineWriter, src: Path) -> list[dict[str, Any]]:
        launch = self.launch
        assert launch.spec.code is not None  # submission resolves data through the code repo
        return data_revs.fetch(
            launch.spec.code.repo,
            launch.resolved.commit,
            [d.model_dump() for d in launch.resolved.data],
            src,
            self.workspace / "data-revs",
            lambda message: writer.write("system", f"tracectl: {message}"),
        )

    def _store_outputs(
        self, writer: LineWriter, store: ArtifactStore, src: Path
    ) -> list[dict[str, Any]]:
        outputs = collect_outputs(store, src, self.launch.spec.outputs)
        for item in outputs:
            writer.write("system", f"tracectl: output {item['path']} sha256:{item['sha256']}")
        return outputs

    def _execute(self, writer: LineWriter, src: Path) -> tuple[int | None, str | None]:
        spec = self.launch.spec
        env = task_environ(os.environ)  # the runtime's own credentials stay with it
        env.update(spec.env)
        env.update(self.launch.env)  # the controller's own variables win
        # The task's own environment, never the controller's: its bin/ first, as `activate` does.
        env.pop("PYTHONHOME", None)
        if self.env is not None:
            env["VIRTUAL_ENV"] = self.env.prefix
            env["PATH"] = f"{Path(self.env.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        params_file = self.workspace / "params.json"
        params_file.write_text(json.dumps(spec.params, indent=2, sort_keys=True))
        env["TRACECTL_PARAMS_FILE"] = str(params_file)
        env["TRACECTL_PARAMS"] = json.dumps(spec.params, sort_keys=True)
        memory = spec.resources.memory_bytes()
        writer.write("system", f"tracectl: exec {json.dumps(spec.command)}")
        try:
            self.child = subprocess.Popen(
                spec.command,
                cwd=src,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=limits.preexec(memory, spec.resources.cpu),
            )
        except OSError as exc:
            return None, f"cannot start {spec.command[0]!r}: {exc.strerror}"
        pumps = [
            threading.Thread(target=writer.pump, args=("stdout", self.child.stdout), daemon=True),
            threading.Thread(target=writer.pump, args=("stderr", self.child.stderr), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        timeout = spec.timeout_s
        reason = None
        try:  # a wait, not a poll: the end is seen when it happens (was every 50 ms)
            self.child.wait(timeout or None)
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout:g}s"
            writer.write("system", f"tracectl: {reason}; sending SIGTERM")
            self._stop_child()
        code_ = self.child.wait()
        for pump in pumps:
            pump.join(timeout=10)
        if self.cancelled and reason is None:
            reason = "cancelled"
        if code_ < 0 and reason is None:
            reason = f"killed by signal {signal.Signals(-code_).name}"
        elif code_ != 0 and reason is None:
            reason = f"exited with code {code_}"
        return code_, reason

    def _stop_child(self) -> None:
        assert self.child is not None
        self.child.terminate()
        try:
            self.child.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self.child.kill()


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m controller.runtime.runner LAUNCH_FILE", file=sys.stderr)
        return 2
    return Runner(Path(sys.argv[1])).run()


if __name__ == "__main__":
    sys.exit(main())
