"""Where Kafka put a task's records: the delivery ranges reported by the producer's hook.

``SpooledProducer(on_delivered=...)`` calls a hook after each acknowledged chunk with the
``Delivered`` ranges of that chunk (kafka_transport.py). These hooks append them, one JSON
object a line, to a small file per task attempt (log lines) or per task (status events):

- log lines: ``<home>/logs/<run>/<task>/<attempt>.kafka.ndjson`` (beside the file record);
- status events: ``<home>/deliveries/status/<task>.ndjson``.

A file, not the store: the log sink runs in the runner process, which has no store access.
Appending keeps what was delivered before a crash. The reconciliation check reads them back
(``read_ranges``) and keeps the merged ranges in the store for the passport.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.config import Settings

if TYPE_CHECKING:  # kafka_transport imports the Kafka client: not for the embedded default
    from controller.logs.kafka_transport import Delivered

MERGE_GAP = 10_000


def log_ranges_path(settings: Settings, run_id: str, task_id: str, attempt: int) -> Path:
    return settings.logs_dir / run_id / task_id / f"{attempt}.kafka.ndjson"


def status_ranges_path(settings: Settings, task_id: str) -> Path:
    return settings.home / "deliveries" / "status" / f"{task_id}.ndjson"


def _entry(item: Delivered) -> str:
    return (
        json.dumps(
            {
                "topic": item.topic,
                "partition": item.partition,
                "first_offset": item.first_offset,
                "last_offset": item.last_offset,
                "records": item.records,
            }
        )
        + "\n"
    )


def append_ranges(path: Path, delivered: Sequence[Delivered]) -> None:
    if not delivered:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("".join(_entry(item) for item in delivered))


class LogDeliveries:
    """The hook of one task attempt's log sink: every chunk holds only that task's key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, delivered: Sequence[Delivered]) -> None:
        append_ranges(self.path, delivered)


class StatusDeliveries:
    """The hook of the status publisher: one chunk holds many tasks' events (key = task id)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    def __call__(self, delivered: Sequence[Delivered]) -> None:
        by_task: dict[str, list[Delivered]] = {}
        for item in delivered:
            task_id = item.key.decode(errors="replace")
            if task_id.isidentifier():  # a task id; never a path a key could steer
                by_task.setdefault(task_id, []).append(item)
        with self._lock:
            for task_id, items in by_task.items():
                append_ranges(status_ranges_path(self.settings, task_id), items)


def read_ranges(path: Path) -> list[dict[str, Any]]:
    """The recorded ranges, in (topic, partition, offset) order; ranges closer than
    ``MERGE_GAP`` offsets are joined. A far one (lines re-sent by a repair hours later) stays
    apart, so that reading the ranges back does not read everything published in between."""
    if not path.exists():
        return []
    spans: list[dict[str, Any]] = []
    for raw in path.read_text().splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue  # a line cut by a crash mid-write
        spans.append(
            {
                "topic": str(item["topic"]),
                "partition": int(item["partition"]),
                "first_offset": int(item["first_offset"]),
                "last_offset": int(item["last_offset"]),
                "records": int(item["records"]),
            }
        )
    spans.sort(key=lambda s: (s["topic"], s["partition"], s["first_offset"]))
    merged: list[dict[str, Any]] = []
    for span in spans:
        last = merged[-1] if merged else None
        if (
            last is not None
            and (last["topic"], last["partition"]) == (span["topic"], span["partition"])
            and span["first_offset"] <= last["last_offset"] + MERGE_GAP
        ):
            last["last_offset"] = max(last["last_offset"], span["last_offset"])
            last["records"] += span["records"]
        else:
            merged.append(dict(span))
    return merged
