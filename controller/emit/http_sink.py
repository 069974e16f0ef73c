"""OpenLineage events POSTed to an HTTP endpoint (Marquez: /api/v1/lineage), from a disk spool.

`put` appends the event to the spool (controller/logs/spool.py) and returns; one sender thread
POSTs the spool's records one at a time, in order, and forgets each only once the endpoint
answered 2xx. A connection error, a 5xx, 408 or 429 is retried with exponential backoff
(controller/backoff.py: doubling from 0.5 s up to 10 s, jittered) and nothing after it is
sent meanwhile; another 4xx means the endpoint will never take that event: it is appended to
`rejected.ndjson` beside the spool, logged, and the sender moves on. The spool outlives a
restart; the next controller resumes it where the last acknowledged event left it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from controller.backoff import Backoff
from controller.config import Settings
from controller.logs.spool import Spool

log = logging.getLogger("tracectl.emit.http")

SPOOL_MAX_BYTES = 64 << 20
TIMEOUT_S = 10.0
RETRYABLE = {408, 425, 429}


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE


class HttpLineageSink:
    def __init__(self, settings: Settings) -> None:
        assert settings.openlineage_url is not None
        key = settings.openlineage_api_key
        self.url = settings.openlineage_url
        self.http = httpx.Client(
            timeout=TIMEOUT_S,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {key}"} if key else {}),
            },
        )
        folder = settings.home / "spool" / "openlineage-http"
        self.spool = Spool(folder, SPOOL_MAX_BYTES)
        self.rejected_file = folder.parent / "openlineage-rejected.ndjson"
        self.sent = self.rejected = self.failures = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openlineage-http", daemon=True)
        self._thread.start()

    # -- caller side --------------------------------------------------------------------
    def put(self, run_id: str, event: bytes) -> bool:
        accepted = self.spool.append(run_id.encode(), event)
        self._wake.set()
        return accepted

    def flush(self, timeout_s: float) -> bool:
        """Wait until the endpoint took every spooled event; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.spool.empty and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spool.empty

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=TIMEOUT_S + 5)
        self.http.close()
        self.spool.close()

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "rejected": self.rejected,
            "failures": self.failures,
            "spooled_bytes": self.spool.pending_bytes,
            "last_error": self.last_error,
        }

    # -- sender thread ------------------------------------------------------------------
    def _post(self, event: bytes) -> int | None:
        """The endpoint's status, or None when it could not be reached."""
        try:
            return self.http.post(self.url, content=event).status_code
        except httpx.HTTPError as exc:
            self.last_error = repr(exc)
            return None

    def _deliver(self, event: bytes) -> bool:
        """True when the event is done with (taken, or refused for good)."""
        status = self._post(event)
        if status is not None and 200 <= status < 300:
            self.sent += 1
            return True
        if status is not None and not retryable(status):
            self.rejected += 1
            log.error(
                "OpenLineage endpoint %s refused an event (%d); kept in %s",
                self.url,
                status,
                self.rejected_file,
            )
            with self.rejected_file.open("ab") as out:
                out.write(event + b"\n")
            return True
        if status is not None:
            self.last_error = f"HTTP {status}"
        return False

    def _run(self) -> None:
        backoff = Backoff()
        while not self._closing.is_set():
            record = self.spool.read(1)
            if not record:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            if self._deliver(record[0][1]):
                self.spool.ack()
                backoff.reset()
                continue
            self.spool.rewind()
            self.failures += 1
            delay = backoff.next()
            log.warning(
                "OpenLineage endpoint %s unreachable (%s); retrying in %.1fs, %d bytes spooled",
                self.url,
                self.last_error,
                delay,
                self.spool.pending_bytes,
            )
            self._closing.wait(delay)
