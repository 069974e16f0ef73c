"""Running the API server: in the foreground (`tracectl server`) or embedded in a thread."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from controller.api.app import create_app
from controller.config import Settings
from controller.loopback import free_port


def serve(settings: Settings) -> None:
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info", access_log=False)


class EmbeddedServer:
    """The controller on a free loopback port in a background thread (demo, tests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1",
                                port=self.settings.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="tracectl-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def __enter__(self) -> EmbeddedServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded controller did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
