"""A real `tracectl server` in a subprocess, for tests that kill -9 it and start it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from controller.server import free_port
from tests.waiting import wait_for


class ServerProcess:
    def __init__(
        self, home: Path, env: dict[str, str] | None = None, ready_timeout_s: float = 240.0
    ) -> None:
        self.home, self.port = home, free_port()
        self.ready_timeout_s = ready_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Every life of the server appends to one log next to its home: read it when a fault
        # test fails.
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home.parent / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller.cli.main",
                    "server",
                    "--home",
                    str(self.home),
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for("the controller to become ready", self.ready, self.ready_timeout_s)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10).json()
