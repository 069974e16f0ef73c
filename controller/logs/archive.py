"""Archives a task attempt's complete log, gzip-compressed, in the artifact store.

The source is the sink's own record (the file written as the lines were produced), never
the executor (a pod's log is gone once it is garbage-collected). ``read_archive`` unpacks an
object again (log reconciliation), keeping the lines before any damage.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import Settings
from controller.logs.file_sink import decode, log_path
from controller.ports import ArtifactStore


def archive_key(run_id: str, task_id: str, attempt: int) -> str:
    return f"logs/{run_id}/{task_id}/{attempt}.log.gz"


def archive_task_log(
    settings: Settings, store: ArtifactStore, run_id: str, task_id: str, attempt: int
) -> dict[str, Any]:
    """Write logs/<run>/<task>/<attempt>.log.gz; return its URI, checksums and line count."""
    source = log_path(settings, run_id, task_id, attempt)
    content = hashlib.sha256()
    lines = 0
    with tempfile.TemporaryDirectory(prefix="tracectl-log-") as tmp:
        packed = Path(tmp) / "log.gz"
        # mtime=0 keeps the gzip bytes a function of the log alone (stable object hash).
        with gzip.GzipFile(packed, "wb", mtime=0) as out:
            if source.exists():
                with source.open("rb") as handle:
                    for raw in handle:
                        if not raw.endswith(b"\n"):
                            break
                        line = decode(raw, run_id, task_id, attempt)
                        text = (
                            f"{line.timestamp.isoformat()} {line.stream} {line.message}\n"
                        ).encode()
                        out.write(text)
                        content.update(line.message.encode() + b"\n")
                        lines += 1
        stored = store.put_file(packed, key=archive_key(run_id, task_id, attempt))
    return {
        "uri": stored.uri,
        "sha256": stored.sha256,
        "size": stored.size,
        "lines": lines,
        "content_sha256": content.hexdigest(),
    }


@dataclass(frozen=True)
class ArchivedLine:
    timestamp: str
    stream: str
    message: str


@dataclass
class ArchivedLog:
    """What an archive object holds: its messages in sequence order (line i is sequence i:
    the archive is written from the file record in order) and why reading stopped early."""

    lines: list[ArchivedLine]
    error: str | None = None


def read_archive(data: bytes) -> ArchivedLog:
    """Unpack an archive object; a truncated or damaged one yields the lines before the damage."""
    text = bytearray()
    error = None
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as packed:
            while chunk := packed.read(1 << 20):
                text += chunk
    except (OSError, EOFError, zlib.error) as exc:
        error = f"{type(exc).__name__}: {exc}"
    rows = bytes(text).split(b"\n")
    complete, tail = rows[:-1], rows[-1]
    if tail and error is None:
        error = "the last line has no newline"
    lines = []
    for raw in complete:
        stamp, _, rest = raw.decode("utf-8", errors="replace").partition(" ")
        stream, _, message = rest.partition(" ")
        lines.append(ArchivedLine(stamp, stream, message))
    return ArchivedLog(lines, error)
