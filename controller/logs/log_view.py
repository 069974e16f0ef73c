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
# As file_sink.encode writes a record: `{"seq": N, "ts": "T", "stream": "S", "message": "M"}`.
HEAD = re.compile(rb'\{"seq": \d+, "ts": "[^"]*", "stream": "')
MESSAGE_SEP, END = b'", "message": "', b'"}\n'


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


def _by_record(block: bytes, filt: LogFilter | None = None) -> bytes:
    """BLOCK's records FILT keeps, as text, each read as JSON (an escaped message, a time
    filter or a layout not file_sink's needs it)."""
    records = (json.loads(raw) for raw in block.split(b"\n")[:-1])
    return "".join(
        f"{SHORT.get(x['stream'], x['stream'])} {x['message']}\n"
        for x in records
        if filt is None or _keep(x, filt)
    ).encode()


def as_text(block: bytes) -> bytes:
    """Whole records file_sink.encode wrote, as `out MESSAGE` lines. Where no message has
    an escape (no backslash in BLOCK) a few whole-block replaces do it, not a loop in Python:
    the key order is file_sink's, and an unescaped `"` or newline only ever closes a value."""
    lines = block.count(b"\n")
    if b"\\" in block:
        return _by_record(block)
    body, heads = HEAD.subn(b"", block)
    if not heads == lines == body.count(MESSAGE_SEP) == body.count(END):
        return _by_record(block)  # not file_sink's layout
    body = b"\n" + body.replace(MESSAGE_SEP, b" ").replace(END, b"\n")
    for long, short in SHORT_B.items():  # each line starts after a newline: its stream
        body = body.replace(b"\n" + long + b" ", b"\n" + short + b" ")
    return body[1:]


def _blocks(path: Path) -> Iterator[bytes]:
    """PATH's complete lines in blocks of about BLOCK bytes (a line still being written is
    left for the next read)."""
    with path.open("rb") as handle:
        rest = b""
        while data := handle.read(BLOCK):
            data = rest + data
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            if end:
                yield data[:end]


def _filtered(text: bytes, filt: LogFilter) -> bytes:
    """The `out MESSAGE` lines of TEXT (no message holds a newline) that FILT keeps."""
    streams = {SHORT.get(s, s) for s in filt.streams}
    kept = []
    for line in text.decode().split("\n")[:-1]:
        short, _, message = line.partition(" ")
        if (not streams or short in streams) and (filt.grep is None or filt.grep.search(message)):
            kept.append(line + "\n")
    return "".join(kept).encode()


def _file_text(path: Path, filt: LogFilter) -> Iterator[bytes]:
    """PATH's lines that FILT keeps, as text, a block of about BLOCK bytes at a time."""
    some = bool(filt.streams or filt.grep)
    for block in _blocks(path):
        if filt.since is not None or (some and b"\\" in block):
            text = _by_record(block, filt)  # the time, or an escaped message, is needed
        else:
            text = _filtered(as_text(block), filt) if some else as_text(block)
        if text:
            yield text


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
        return _file_text(path, filt)
    return _chunks(
        text(x) for x in _paged(reader, where) if filt.keeps(x.stream, x.message, x.timestamp)
    )
