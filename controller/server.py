"""Running the API server: in the foreground (`tracectl server`) or embedded in a thread."""

from __future__ import annotations

import gc
import threading
import time
from types import TracebackType

import uvicorn

from controller.api.app import create_app
from controller.config import Settings
from controller.loopback import free_port


def serve(settings: Settings) -> None:
    app = create_app(settings)
    settle_collector()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)


def settle_collector() -> None:
    """Tune the garbage collector for a process that is the controller and nothing else.

    A full collection walks every tracked object and holds every thread meanwhile: up to
    100+ ms in the middle of a dispatch, several times a minute under load. What start-up
    made (modules, the app) is frozen out of its sight, and full collections come after 100
    middle-generation ones instead of 10. Not for processes that embed the controller (tests,
    the demo): the setting is the whole process's."""
    gc.collect()
    gc.freeze()
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


class EmbeddedServer:
    """The controller on a free loopback port in a background thread (demo, tests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.settings.port,
            log_level="warning",
            access_log=False,
        )
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
