"""The reconnect rule of the pod log follower, as a pure function (no cluster needed).

Here the rule meets a source that serves `timestamps=true` lines the way a kubelet does
(every line stamped with nanoseconds, `sinceTime` cut to the second), under random stamps and
random disconnects; test_pod_logs.py runs it over the real API server's pods/log.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.executors.k8s_logs import (
    AttemptLog,
    LogCursor,
    follow,
    new_lines,
    parse_line,
    since_time,
)
from controller.ports import LogLine

BASE = 1_764_000_000 * 1_000_000_000  # a whole second, in nanoseconds


def stamp(nanos: int) -> str:
    seconds, frac = divmod(nanos, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{frac:09d}".rstrip("0").rstrip(".")  # the kubelet trims trailing zeros
    return f"{whole}{fraction}Z"


def served(lines: list[tuple[int, str]], since: str | None) -> list[str]:
    """What a kubelet returns for a connection from SINCE (second precision)."""
    floor = 0
    if since is not None:
        floor = int(datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()) * 10**9
    return [f"{stamp(n)} {m}" for n, m in lines if n >= floor]


def test_parse_line_reads_nanoseconds_and_keeps_the_message() -> None:
    nanos, message = parse_line("2026-11-25T12:00:01.000000123Z  two spaces kept")
    assert nanos % 10**9 == 123
    assert message == " two spaces kept"
    assert parse_line("2026-11-25T12:00:01Z x")[0] % 10**9 == 0
    assert since_time(nanos) == "2026-11-25T12:00:01Z"


def test_reconnect_skips_what_was_delivered_even_with_equal_stamps() -> None:
    lines = [(BASE + 5, "a"), (BASE + 5, "b"), (BASE + 5, "c"), (BASE + 10**9, "d")]
    cursor = LogCursor()
    first = list(new_lines(cursor, served(lines, cursor.reconnect())[:2]))  # broke after b
    second = list(new_lines(cursor, served(lines, cursor.reconnect())))
    assert [m for _n, m in first + second] == ["a", "b", "c", "d"]


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(
        st.sampled_from([0, 0, 1, 999, 10**9 - 1, 10**9, 3 * 10**9]), min_size=1, max_size=60
    ),
    breaks=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
)
def test_no_line_is_lost_or_repeated_across_any_reconnects(
    gaps: list[int], breaks: list[int]
) -> None:
    lines, now = [], BASE
    for i, gap in enumerate(gaps):
        now += gap
        lines.append((now, f"line {i}"))
    cursor, delivered = LogCursor(), []
    for cut in [*breaks, len(lines)]:  # each connection breaks after `cut` lines
        delivered += [m for _n, m in new_lines(cursor, served(lines, cursor.reconnect())[:cut])]
    delivered += [m for _n, m in new_lines(cursor, served(lines, cursor.reconnect()))]
    assert delivered == [m for _n, m in lines]


class ListSink:
    def __init__(self) -> None:
        self.lines: list[LogLine] = []

    def emit(self, line: LogLine) -> None:
        self.lines.append(line)

    def flush(self) -> None: ...

    def close(self) -> None: ...


def test_follow_reconnects_after_a_broken_stream_and_ends_with_the_container() -> None:
    lines = [(BASE + i * 300_000_000, f"step {i}") for i in range(10)]
    connections: list[str | None] = []

    def opener(since: str | None) -> list[str]:
        connections.append(since)
        if len(connections) == 2:
            raise ConnectionResetError("stream reset")
        return served(lines, since)[: 4 if len(connections) == 1 else None]

    ended = iter([False, False, True, True])
    sink = ListSink()
    out = AttemptLog(sink, "run", "task", 1)
    follow(opener, LogCursor(), out, "stdout", lambda: next(ended), threading.Event())
    stdout = [line.message for line in sink.lines if line.stream == "stdout"]
    assert stdout == [m for _n, m in lines]
    assert [line.seq for line in sink.lines] == list(range(1, len(sink.lines) + 1))
    assert connections[0] is None and connections[1] == since_time(lines[3][0])
    notes = [line.message for line in sink.lines if line.stream == "system"]
    assert len(notes) == 1 and "ConnectionResetError" in notes[0]
