"""A log printed as text reads the same whichever way log_view turns a block of records into
text (whole-block replaces where no message has an escape, JSON record by record elsewhere)."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.logs import log_view
from controller.logs.file_sink import FileLogReader, encode
from controller.ports import LogLine

START = datetime(2026, 12, 5, tzinfo=UTC)
STREAMS = st.sampled_from(["stdout", "stderr", "system", "other"])
PLAIN = st.from_regex(r"[a-z0-9 =.:,{}\[\]é日-]{0,30}", fullmatch=True)  # no escape in JSON
FILTERS = [
    log_view.LogFilter(),
    log_view.LogFilter(streams=frozenset({"stderr"})),
    log_view.LogFilter(streams=frozenset({"stdout", "other"}), grep=re.compile("a|é")),
    log_view.LogFilter(grep=re.compile(r'^\w|"')),
    log_view.LogFilter(since=START + timedelta(seconds=5)),
]


class OneFile(FileLogReader):
    """A log reader holding one attempt's file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def path_of(self, run_id: str, task_id: str, attempt: int | None) -> Path | None:
        return self.path


def by_record(raw: bytes, filt: log_view.LogFilter) -> bytes:
    """What a reader of each record as JSON prints."""
    records = [json.loads(line) for line in raw.splitlines(keepends=True) if line.endswith(b"\n")]
    return "".join(
        f"{log_view.SHORT.get(x['stream'], x['stream'])} {x['message']}\n"
        for x in records
        if filt.keeps(x["stream"], x["message"], x["ts"])
    ).encode()


def printed(lines: list[tuple[str, str]], block: int, partial: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "1.jsonl"
        raw = b"".join(
            encode(LogLine("run", "task", 1, seq, stream, message, START + timedelta(seconds=seq)))
            for seq, (stream, message) in enumerate(lines, 1)
        ) + (b'{"seq": 99, "ts": "2026' if partial else b"")
        path.write_bytes(raw)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(log_view, "BLOCK", block)
            for filt in FILTERS:
                text = b"".join(log_view.stream(OneFile(path), ("run", "task", 1), filt))
                assert text == by_record(raw, filt), filt


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(STREAMS, PLAIN), max_size=40), st.sampled_from([64, 1 << 20]), st.booleans()
)
def test_messages_without_escapes_print_as_their_records_say(
    lines: list[tuple[str, str]], block: int, partial: bool
) -> None:
    printed(lines, block, partial)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(STREAMS, st.one_of(PLAIN, st.text(max_size=20))), max_size=40),
    st.sampled_from([64, 1 << 20]),
    st.booleans(),
)
def test_any_message_prints_as_its_record_says(
    lines: list[tuple[str, str]], block: int, partial: bool
) -> None:
    printed(lines, block, partial)
