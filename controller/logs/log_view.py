"""A task's log as a user reads it: filtered (stream, text, time), its tail, streamed as text.

Any log reader works through its paged `read`; the file reader also hands out the file of an
attempt (`path_of`), which is scanned here in large blocks, forwards or (for a tail)
backwards, so that a million-line log streams at the speed of the disk, not of pages.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.ports import LogLine, LogReader

PAGE = 5000
BLOCK = 1 << 20
SHORT = {"stdout": "out", "stderr": "err", "system": "sys"}
SHORT_B = {k.encode(): v.encode() for k, v in SHORT.items()}
STREAM, MESSAGE = b'"stream": "', b'"message": "'  # as file_sink.encode writes them


class LogFilter(BaseModel):
    """Which lines to show; every given condition must hold."""

    model_config = ConfigDict(frozen=True)

    streams: frozenset[str] = Field(default=frozenset(), description="empty: all streams")
    grep: re.Pattern[str] | None = None
    since: datetime | None = None

    def keeps(self, stream: str, message: str, timestamp: str | datetime) -> bool:
        if self.streams and stream not in self.streams:
            return False
        if self.grep is not None and not self.grep.search(message):
            return False
        if self.since is not None:
            when = (
                timestamp if isinstance(timestamp, datetime) else datetime.fromisoformat(timestamp)
            )
            return when >= self.since
        return True


def _path(reader: LogReader, where: tuple[str, str, int | None]) -> Path | None:
    path_of = getattr(reader, "path_of", None)
    return path_of(*where) if path_of is not None else None


def text(line: LogLine) -> bytes:
    return f"{SHORT.get(line.stream, line.stream)} {line.message}\n".encode()


def _records(raw_lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for raw in raw_lines:
        if raw.endswith(b"\n"):  # a line still being written is left for the next read
            yield json.loads(raw)


def _keep(record: dict[str, Any], filt: LogFilter) -> bool:
    return filt.keeps(record["stream"], record["message"], record["ts"])


def _line(record: dict[str, Any], where: LogLine) -> LogLine:
    return LogLine(
        run_id=where.run_id,
        task_id=where.task_id,
        attempt=where.attempt,
        seq=int(record["seq"]),
        stream=str(record["stream"]),
        message=str(record["message"]),
        timestamp=datetime.fromisoformat(record["ts"]),
    )


def _backwards(path: Path) -> Iterator[bytes]:
    """The complete lines of PATH, last first (a line still being written is left out)."""
    with path.open("rb") as handle:
        end = handle.seek(0, 2)
        rest, first = b"", True
        while end > 0:
            start = max(0, end - BLOCK)
            handle.seek(start)
            lines = (handle.read(end - start) + rest).split(b"\n")
            if first:
                lines[-1], first = b"", False  # after the last newline: empty or partial
            end = start
            rest = lines[0] if start > 0 else b""
            for raw in reversed(lines[1:] if start > 0 else lines):
                if raw:
                    yield raw + b"\n"


def _chunks(lines: Iterable[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    buffer: list[bytes] = []
    held = 0
    for line in lines:
        buffer.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


def _plain(raw: bytes) -> bytes | None:
    """`out MESSAGE\\n` straight from a record file_sink.encode wrote, or None when its
    message has escapes (then json.loads reads it)."""
    start = raw.find(MESSAGE)
    if start < 0 or raw.find(b"\\", start) >= 0 or not raw.endswith(b'"}\n'):
        return None
    stream = raw.find(STREAM)
    kind = raw[stream + len(STREAM) : raw.find(b'"', stream + len(STREAM))]
    return SHORT_B.get(kind, kind) + b" " + raw[start + len(MESSAGE) : -3] + b"\n"


def _file_text(path: Path, filt: LogFilter) -> Iterator[bytes]:
    everything = not (filt.streams or filt.grep or filt.since)
    with path.open("rb") as handle:
        for raw in handle:  # the hot loop of a big log: bytes in, bytes out where it can
            if not raw.endswith(b"\n"):
                return  # a line still being written
            fast = _plain(raw) if everything else None
            if fast is not None:
                yield fast
                continue
            record = json.loads(raw)
            if everything or _keep(record, filt):
                stream = SHORT.get(record["stream"], record["stream"])
                yield f"{stream} {record['message']}\n".encode()


def _paged(reader: LogReader, where: tuple[str, str, int | None]) -> Iterator[LogLine]:
    after = 0
    while True:
        page = reader.read(*where, after, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].seq


def tail(
    reader: LogReader, where: tuple[str, str, int | None], count: int, filt: LogFilter
) -> list[LogLine]:
    """The last COUNT lines that FILT keeps, oldest first."""
    path = _path(reader, where)
    if path is None:
        kept = deque(
            (x for x in _paged(reader, where) if filt.keeps(x.stream, x.message, x.timestamp)),
            count,
        )
        return list(kept)
    run_id, task_id, _ = where
    template = LogLine(run_id, task_id, int(path.stem), 0, "", "", datetime.min)
    found: list[LogLine] = []
    for record in _records(_backwards(path)):
        if len(found) >= count:
            break
        if _keep(record, filt):
            found.append(_line(record, template))
    return found[::-1]


def stream(
    reader: LogReader, where: tuple[str, str, int | None], filt: LogFilter, last: int | None = None
) -> Iterator[bytes]:
    """The attempt's lines FILT keeps (the LAST ones only, when given) as text blocks."""
    if last is not None:
        return _chunks(text(x) for x in tail(reader, where, last, filt))
    path = _path(reader, where)
    if path is not None:
        return _chunks(_file_text(path, filt))
    return _chunks(
        text(x) for x in _paged(reader, where) if filt.keeps(x.stream, x.message, x.timestamp)
    )
