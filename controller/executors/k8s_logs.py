"""Following a pod's container logs into the log sink, across reconnects, without gaps or repeats.

The kubelet stamps every line (`timestamps=true`: RFC3339 with nanoseconds). `sinceTime`
only has second precision, so a reconnect asks from the second of the last line delivered
and drops what it already delivered: every line stamped earlier, and as many lines stamped
exactly like the last one as were delivered before. `LogCursor` is that rule, kept pure.

When the endpoint answers an error (no kubelet, no log for the container), the follower
writes one system line saying so, retries with backoff, and stops when the container has ended.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from controller.ports import LogLine, LogSink

log = logging.getLogger("tracectl.k8s.logs")
_STAMP = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ?(.*)$", re.DOTALL
)
RECONNECT_MAX_S = 30.0


def parse_line(raw: str) -> tuple[int, str]:
    """(nanoseconds since the epoch, message) of one `timestamps=true` log line."""
    match = _STAMP.match(raw)
    if match is None:
        raise ValueError(f"log line without a kubelet timestamp: {raw[:80]!r}")
    seconds, fraction, zone, message = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    whole = datetime.fromisoformat(seconds + zone)
    nanos = int((fraction or "0").ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + nanos, message


def since_time(nanos: int) -> str:
    """`sinceTime` for a reconnect: the second of NANOS (the API drops sub-seconds)."""
    return datetime.fromtimestamp(nanos // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_of(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, UTC)


@dataclass
class LogCursor:
    """Where a container's log was delivered up to."""

    last: int | None = None  # nanoseconds of the last delivered line
    at_last: int = 0  # lines delivered with exactly that stamp
    _replay: int = field(default=0, repr=False)  # of those, still to skip on this connection

    def reconnect(self) -> str | None:
        """Start a new connection; return its `sinceTime` (None: from the beginning)."""
        self._replay = self.at_last
        return None if self.last is None else since_time(self.last)

    def admit(self, nanos: int) -> bool:
        """Whether a line stamped NANOS is new; if so it counts as delivered."""
        if self.last is not None:
            if nanos < self.last:
                return False
            if nanos == self.last and self._replay > 0:
                self._replay -= 1
                return False
        if nanos == self.last:
            self.at_last += 1
        else:
            self.last, self.at_last, self._replay = nanos, 1, 0
        return True


def new_lines(cursor: LogCursor, raw_lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """The lines of one connection that were not delivered before (the dedupe rule)."""
    for raw in raw_lines:
        nanos, message = parse_line(raw)
        if cursor.admit(nanos):
            yield nanos, message


class AttemptLog:
    """One sink per attempt; lines of all its containers get one seq order."""

    def __init__(
        self, sink: LogSink, run_id: str, task_id: str, attempt: int, first_seq: int = 0
    ) -> None:
        self.sink = sink
        self.ids = (run_id, task_id, attempt)
        self.seq = first_seq
        self.lock = threading.Lock()

    def write(self, stream: str, message: str, nanos: int | None = None) -> None:
        stamp = stamp_of(nanos) if nanos is not None else datetime.now(UTC)
        with self.lock:
            self.seq += 1
            self.sink.emit(LogLine(*self.ids, self.seq, stream, message, stamp))
            self.sink.flush()

    def close(self) -> None:
        with self.lock:
            self.sink.close()


Opener = Callable[[str | None], Iterable[str]]  # sinceTime -> the raw lines of one connection


def follow(
    opener: Opener,
    cursor: LogCursor,
    out: AttemptLog,
    stream: str,
    ended: Callable[[], bool],
    stop: threading.Event,
) -> None:
    """Deliver a container's lines until it ended and a connection read it to the end."""
    delay = 0.5
    reported = False
    while not stop.is_set():
        finished_before = ended()
        try:
            for nanos, message in new_lines(cursor, opener(cursor.reconnect())):
                out.write(stream, message, nanos)
                delay = 0.5
            if finished_before:
                return  # a whole read after the container ended: nothing more can come
        except Exception as exc:  # the stream broke or the endpoint refused: reconnect
            if not reported:
                out.write(
                    "system", f"tracectl: pod log stream unavailable ({_short(exc)}); retrying"
                )
                reported = True
            if finished_before:
                return
        stop.wait(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)


def _short(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    return f"HTTP {status} {reason}" if status else f"{type(exc).__name__}: {exc}"[:200]
