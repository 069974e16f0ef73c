"""The log viewer's reads: a filtered page after a line or before one, found by scanning a
bounded number of lines, so a page deep into a long log never loads the whole log."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel

from controller.core.service import ControllerService
from controller.ports import LogLine

LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\b")
_ALIASES = {"warning": "warn", "fatal": "critical"}
CHUNK = 1000
SCAN_BUDGET = 50_000  # lines one request reads at most; the page says where it stopped


class LineFilter(BaseModel):
    stream: str | None = None
    level: str | None = None  # this level or worse
    text: str | None = None  # case-insensitive substring of the message

    def keeps(self, line: LogLine) -> bool:
        if self.stream and line.stream != self.stream:
            return False
        if self.level and LEVELS.index(level_of(line) or "trace") < LEVELS.index(self.level):
            return False
        return not self.text or self.text.lower() in line.message.lower()


class ViewLine(BaseModel):
    seq: int
    stream: str
    level: str | None
    timestamp: str
    message: str


class LinePage(BaseModel):
    items: list[ViewLine]
    next_after_seq: int  # the last line read: where the next page starts
    first_seq: int  # the first line read: the previous page ends before it (1: none before)
    scanned: int


def level_of(line: LogLine) -> str | None:
    """The level a line names (a logging prefix such as ERROR or WARNING), if any."""
    found = _LEVEL.search(line.message[:48])  # where logging formats put it
    if not found:
        return None
    word = found.group(1).lower()
    return _ALIASES.get(word, word)


def view(line: LogLine) -> ViewLine:
    return ViewLine(
        seq=line.seq,
        stream=line.stream,
        level=level_of(line),
        timestamp=line.timestamp.isoformat(),
        message=line.message,
    )


def chunks(
    svc: ControllerService, task_id: str, attempt: int | None, after_seq: int
) -> Iterator[list[LogLine]]:
    """The attempt's lines after AFTER_SEQ, CHUNK at a time, until the end written so far."""
    while lines := svc.task_logs(task_id, attempt, after_seq, CHUNK):
        yield lines
        after_seq = lines[-1].seq


def page(
    svc: ControllerService,
    task_id: str,
    attempt: int | None,
    after_seq: int,
    limit: int,
    keep: LineFilter,
) -> LinePage:
    found: list[ViewLine] = []
    last, scanned = after_seq, 0
    for lines in chunks(svc, task_id, attempt, after_seq):
        for line in lines:
            last, scanned = line.seq, scanned + 1
            if keep.keeps(line):
                found.append(view(line))
                if len(found) >= limit:
                    return LinePage(
                        items=found, next_after_seq=last, first_seq=after_seq + 1, scanned=scanned
                    )
        if scanned >= SCAN_BUDGET:
            break
    return LinePage(items=found, next_after_seq=last, first_seq=after_seq + 1, scanned=scanned)


def page_before(
    svc: ControllerService,
    task_id: str,
    attempt: int | None,
    before_seq: int,
    limit: int,
    keep: LineFilter,
) -> LinePage:
    """The last LIMIT lines before BEFORE_SEQ that KEEP passes: read a chunk at a time
    backwards (each chunk forwards from the seek index, as a next page is)."""
    found: list[ViewLine] = []
    end, scanned = before_seq, 0  # lines with seq < end are still to read
    while end > 1 and len(found) < limit and scanned < SCAN_BUDGET:
        start = max(0, end - 1 - CHUNK)
        window = [x for x in svc.task_logs(task_id, attempt, start, end - 1 - start) if x.seq < end]
        scanned += len(window)
        found = [view(x) for x in window if keep.keeps(x)] + found
        end = start + 1
    items = found[-limit:]
    first = items[0].seq if len(found) > limit else end
    return LinePage(items=items, next_after_seq=before_seq - 1, first_seq=first, scanned=scanned)
