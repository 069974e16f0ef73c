"""A bounded, ordered, on-disk queue of records waiting for Kafka (the spool).

Every record is appended here before it is sent, and leaves only once Kafka acknowledged it:
the spool is the single order of records, so a record spooled during an outage is always
sent before any record written after it. While Kafka answers, the spool holds only what is
in flight; while it does not, the spool grows up to ``max_bytes`` and new records are
refused (counted in ``dropped``) until it drains.

Layout: ``<folder>/<n>.seg`` segment files of ``key TAB value NEWLINE`` records (keys hold no
tab or newline; values are JSON, which escapes newlines) and ``<folder>/ack`` holding the
``segment offset`` of the first unacknowledged record, so a spool left by a dead process is
resumed, not replayed (a record sent but not yet acknowledged may be sent twice; consumers
drop duplicates by event id).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 << 20
# Fewer write() syscalls from the emitting thread: each one lets the sender thread take the GIL,
# and getting it back can wait a whole switch interval. read() flushes, so nothing waits longer.
WRITE_BUFFER_BYTES = 256 << 10


class SpoolFull(RuntimeError):
    """The spool reached its size limit: records are refused until Kafka drains it."""


class SpoolBusy(RuntimeError):
    """Another live process owns this spool."""


class Spool:
    def __init__(self, folder: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.lock = threading.Lock()
        self.dropped = 0
        self.appended = 0
        folder.mkdir(parents=True, exist_ok=True)
        # Held while this object lives (the OS drops it when the process dies): a spool whose
        # lock can be taken has no writer left, and may be drained by someone else.
        self._lock_file: IO[bytes] = (folder / "lock").open("ab")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(f"spool {folder} is in use by another process") from None
        segments = self._segments()
        self._ack = self._read_ack(segments)
        self._read_at = self._ack
        self._write_seg = segments[-1] if segments else self._ack[0]
        self._writer: IO[bytes] = self._seg_path(self._write_seg).open("ab", WRITE_BUFFER_BYTES)
        self._write_size = self._seg_path(self._write_seg).stat().st_size
        # Bytes not yet acknowledged, the quantity the bound applies to.
        self.pending_bytes = (
            sum(self._seg_path(s).stat().st_size for s in segments if s >= self._ack[0])
            - self._ack[1]
        )

    # -- layout -------------------------------------------------------------------------
    def _seg_path(self, number: int) -> Path:
        return self.folder / f"{number:08d}.seg"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.folder.glob("*.seg"))

    def _read_ack(self, segments: list[int]) -> tuple[int, int]:
        ack = self.folder / "ack"
        if ack.exists():
            seg, _, offset = ack.read_text().partition(" ")
            with contextlib.suppress(ValueError):
                return int(seg), int(offset)
        return (segments[0] if segments else 1), 0

    # -- writing ------------------------------------------------------------------------
    def append(self, key: bytes, value: bytes) -> bool:
        """Queue one record; False (and counted in ``dropped``) when the spool is full."""
        record = key + b"\t" + value + b"\n"
        with self.lock:
            if self.pending_bytes + len(record) > self.max_bytes:
                if self.dropped == 0:
                    log.error(
                        "spool %s is full (%d bytes): records are dropped until Kafka drains it",
                        self.folder,
                        self.max_bytes,
                    )
                self.dropped += 1
                return False
            if self._write_size >= self.segment_bytes:
                self._writer.close()
                self._write_seg += 1
                self._writer = self._seg_path(self._write_seg).open("ab", WRITE_BUFFER_BYTES)
                self._write_size = 0
            self._writer.write(record)
            self._write_size += len(record)
            self.pending_bytes += len(record)
            self.appended += 1
            return True

    # -- reading ------------------------------------------------------------------------
    # read/ack/rewind are called by one thread (the sender). Segments are append-only, so the
    # bytes before the writer's position at the last flush never change: they are read and
    # deleted without the lock, which ``append`` (the task's own thread) then never waits for.
    def read(self, max_records: int) -> list[tuple[bytes, bytes]]:
        """The next records after the read cursor (which advances); ``ack`` or ``rewind``."""
        with self.lock:
            self._writer.flush()  # records are whole at every flush: writes hold the lock
            end_seg, end_offset = self._write_seg, self._write_size
        out: list[tuple[bytes, bytes]] = []
        seg, offset = self._read_at
        while len(out) < max_records:
            limit = end_offset if seg == end_seg else None
            path = self._seg_path(seg)
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    for raw in handle:
                        if limit is not None and offset >= limit:
                            break  # written after the flush above: maybe not whole yet
                        key, _, value = raw.rstrip(b"\n").partition(b"\t")
                        out.append((key, value))
                        offset += len(raw)
                        if len(out) >= max_records:
                            break
            if len(out) >= max_records or seg >= end_seg:
                break
            seg, offset = seg + 1, 0
        self._read_at = (seg, offset)
        return out

    def ack(self) -> None:
        """Everything read so far reached Kafka: forget it."""
        old_seg, old_offset = self._ack
        new_seg, new_offset = self._read_at
        freed = new_offset - old_offset
        for seg in range(old_seg, new_seg):
            path = self._seg_path(seg)
            if path.exists():
                freed += path.stat().st_size
                path.unlink()
        tmp = self.folder / "ack.tmp"
        tmp.write_text(f"{new_seg} {new_offset}")
        tmp.replace(self.folder / "ack")
        with self.lock:
            self.pending_bytes -= freed
            self._ack = (new_seg, new_offset)

    def rewind(self) -> None:
        """What was read did not all reach Kafka: read it again, in the same order."""
        with self.lock:
            self._read_at = self._ack

    @property
    def empty(self) -> bool:
        with self.lock:
            return self.pending_bytes <= 0

    def close(self, remove_if_empty: bool = True) -> None:
        with self.lock:
            self._writer.close()
            if remove_if_empty and self.pending_bytes <= 0:
                for path in self.folder.iterdir():
                    path.unlink()
                with contextlib.suppress(OSError):
                    self.folder.rmdir()
            self._lock_file.close()  # releases the flock
