"""The embedded default log sink: one JSON-lines file per task attempt, plus a seek index.

Layout: <home>/logs/<run>/<task>/<attempt>.jsonl holds one object per line
({"seq", "ts", "stream", "message"}); <attempt>.idx holds "seq byte_offset" every
INDEX_EVERY lines so that a page deep into a long log is read without scanning it all.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from controller.config import Settings
from controller.ports import LogLine, LogSinkFactory

INDEX_EVERY = 256


def log_path(settings: Settings, run_id: str, task_id: str, attempt: int) -> Path:
    return settings.logs_dir / run_id / task_id / f"{attempt}.jsonl"


def encode(line: LogLine) -> bytes:
    record = {
        "seq": line.seq,
        "ts": line.timestamp.isoformat(),
        "stream": line.stream,
        "message": line.message,
    }
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


def decode(raw: bytes, run_id: str, task_id: str, attempt: int) -> LogLine:
    record = json.loads(raw)
    return LogLine(
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        seq=int(record["seq"]),
        stream=str(record["stream"]),
        message=str(record["message"]),
        timestamp=datetime.fromisoformat(record["ts"]),
    )


class FileLogSink:
    """Appends lines of one task attempt. Resumes after the last complete line on reopen."""

    def __init__(self, settings: Settings, labels: dict[str, str]) -> None:
        self.path = log_path(settings, labels["run_id"], labels["task_id"], int(labels["attempt"]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_partial_tail()
        self._file: IO[bytes] = self.path.open("ab")
        self._index: IO[str] = self.path.with_suffix(".idx").open("a")

    def _truncate_partial_tail(self) -> None:
        # A writer killed mid-line leaves a fragment; drop it so every line parses.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)

    def emit(self, line: LogLine) -> None:
        if line.seq % INDEX_EVERY == 0:
            self._index.write(f"{line.seq} {self._file.tell()}\n")
            self._index.flush()
        self._file.write(encode(line))
        # Each line reaches the OS at once: a killed runner loses nothing it has emitted.
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
            self._index.close()


class FileLogReader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def attempts(self, run_id: str, task_id: str) -> list[int]:
        folder = self.settings.logs_dir / run_id / task_id
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("*.jsonl"))

    def path_of(self, run_id: str, task_id: str, attempt: int | None) -> Path | None:
        """The file of ATTEMPT (the latest when None), or None when it has none yet."""
        numbers = [attempt] if attempt is not None else self.attempts(run_id, task_id)[-1:]
        paths = [log_path(self.settings, run_id, task_id, n) for n in numbers]
        return paths[0] if paths and paths[0].exists() else None

    def _seek_offset(self, path: Path, after_seq: int) -> int:
        index = path.with_suffix(".idx")
        offset = 0
        if index.exists():
            for entry in index.read_text().splitlines():
                seq, _, pos = entry.partition(" ")
                if int(seq) > after_seq:
                    break
                offset = int(pos)
        return offset

    def read(
        self, run_id: str, task_id: str, attempt: int | None, after_seq: int, limit: int
    ) -> list[LogLine]:
        attempts = [attempt] if attempt is not None else self.attempts(run_id, task_id)[-1:]
        lines: list[LogLine] = []
        for number in attempts:
            path = log_path(self.settings, run_id, task_id, number)
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(self._seek_offset(path, after_seq))
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written
                    line = decode(raw, run_id, task_id, number)
                    if line.seq > after_seq:
                        lines.append(line)
                        if len(lines) >= limit:
                            break
        return lines

    def summary(self, run_id: str, task_id: str, attempt: int) -> dict[str, Any]:
        """Line count and a checksum over the messages, to compare copies of a log."""
        path = log_path(self.settings, run_id, task_id, attempt)
        digest = hashlib.sha256()
        count = 0
        if path.exists():
            with path.open("rb") as handle:
                for raw in handle:
                    if raw.endswith(b"\n"):
                        digest.update(decode(raw, run_id, task_id, attempt).message.encode())
                        digest.update(b"\n")
                        count += 1
        return {
            "lines": count,
            "sha256": digest.hexdigest(),
            "path": str(path),
            "checked_at": datetime.now(UTC).isoformat(),
        }


def file_record(settings: Settings) -> LogSinkFactory:
    """Sinks that keep the file record only (an executor built without the configured sink)."""
    return lambda labels: FileLogSink(settings, labels)
