"""The controller's end of the warm runner (controller/runtime/warm.py): ask it for a runner."""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WARM_MODULE = "controller.runtime.warm"
ANSWER_TIMEOUT_S = 30.0


class WarmRunner:
    """One warm runner process, started at the first request and again if it dies."""

    def __init__(self, environ: Mapping[str, str], on_exit: Callable[[], None]) -> None:
        self.environ = dict(environ)  # what every runner starts with (less its own variables)
        self.on_exit = on_exit
        self._lock = threading.Lock()  # one request in flight: the answers come in order
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()

    def spawn(
        self, launch_file: Path, cwd: Path, env: Mapping[str, str], out: Path
    ) -> tuple[int, float]:
        """PID and start time of a new runner of LAUNCH_FILE; OSError when none was made."""
        request = {"launch_file": str(launch_file), "cwd": str(cwd), "env": dict(env)}
        line = (json.dumps({**request, "out": str(out)}) + "\n").encode()
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                answer = self._answers.get(timeout=ANSWER_TIMEOUT_S)
            except (OSError, queue.Empty) as exc:
                self._stop(proc)
                raise OSError(f"the warm runner did not answer: {exc!r}") from exc
        if "pid" not in answer:
            raise OSError(f"the warm runner could not fork: {answer.get('error')}")
        return int(answer["pid"]), float(answer["create_time"])

    def start(self) -> None:
        """Start the process before the first request needs it."""
        with self._lock:
            self._started()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._answers = queue.Queue()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", WARM_MODULE],
            env=self.environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        threading.Thread(
            target=self._read, args=(self._proc, self._answers), name="tracectl-warm", daemon=True
        ).start()
        return self._proc

    def _read(self, proc: subprocess.Popen[bytes], answers: queue.Queue[dict[str, Any]]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            message = json.loads(raw)
            if "exited" in message:
                self.on_exit()
            else:
                answers.put(message)
        answers.put({"error": "the warm runner ended"})

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            proc.stdin.close()  # EOF ends it; its runners live on
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)
                self._proc = None
