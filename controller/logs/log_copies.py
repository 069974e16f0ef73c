"""Reading back each copy of a task attempt's log, as ``sequence number -> message``.

The four copies (controller/logs/reconcile.py compares them): the sink's file record, the
Kafka records at the offset ranges the producer reported, the search-index documents, and
the archive object. Each reader dedupes by event id (``<task>:<attempt>:<seq>``): a line
sent twice after an outage is one line.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.config import Settings
from controller.logs.archive import read_archive
from controller.logs.file_sink import decode, log_path
from controller.ports import ArtifactStore

KAFKA_READ_TIMEOUT_S = 30.0
INDEX_PAGE = 1000


@dataclass
class LogCopy:
    """One copy as read back. ``damage`` says why it is corrupt beyond its lines."""

    lines: dict[int, str]
    detail: dict[str, Any] = field(default_factory=dict)
    damage: str | None = None


def checksum(lines: Mapping[int, str]) -> str:
    """sha256 over the messages in sequence order, each followed by a newline: the same
    value as the lineage's ``logs.sha256`` and the archive's ``content_sha256``."""
    digest = hashlib.sha256()
    for seq in sorted(lines):
        digest.update(lines[seq].encode() + b"\n")
    return digest.hexdigest()


def read_record(settings: Settings, run_id: str, task_id: str, attempt: int) -> LogCopy | None:
    path = log_path(settings, run_id, task_id, attempt)
    if not path.exists():
        return None
    lines: dict[int, str] = {}
    with path.open("rb") as handle:
        for raw in handle:
            if raw.endswith(b"\n"):
                line = decode(raw, run_id, task_id, attempt)
                lines[line.seq] = line.message
    return LogCopy(lines, {"path": str(path)})


def read_kafka(
    bootstrap: str,
    ranges: list[dict[str, Any]],
    task_id: str,
    attempt: int,
    timeout_s: float = KAFKA_READ_TIMEOUT_S,
) -> LogCopy:
    """The task attempt's records inside RANGES (other tasks share the partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    lines: dict[int, str] = {}
    duplicates = records = 0
    damages: list[str] = []
    key, prefix = task_id.encode(), f"{task_id}:{attempt}:"
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        group_id=None,
        client_id="tracectl-reconcile",
    )
    deadline = time.monotonic() + timeout_s
    try:
        for span in ranges:  # one at a time: two ranges may share a partition
            tp = TopicPartition(span["topic"], span["partition"])
            last = int(span["last_offset"])
            consumer.assign([tp])
            consumer.seek(tp, int(span["first_offset"]))
            while consumer.position(tp) <= last and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    for record in batch:
                        # Cheap filters first: most records in a range are other tasks'.
                        if record.offset > last or record.key != key:
                            continue
                        event = json.loads(record.value)
                        if not str(event.get("event", {}).get("id", "")).startswith(prefix):
                            continue
                        records += 1
                        seq, message = int(event["event"]["sequence"]), str(event["message"])
                        if seq in lines:
                            duplicates += 1
                            if lines[seq] != message:
                                damages.append(f"two records of line {seq} differ")
                        lines[seq] = message
            if consumer.position(tp) <= last:  # not a verdict on the copy: an error
                raise TimeoutError(
                    f"could not read {tp.topic}/{tp.partition} up to offset "
                    f"{last} within {timeout_s:.0f}s"
                )
    finally:
        consumer.close()
    return LogCopy(
        lines,
        {"ranges": ranges, "records": records, "duplicates": duplicates},
        "; ".join(damages[:3]) or None,
    )


def data_stream_of(backing_index: str) -> str:
    """``.ds-logs-tracectl-default-2026.11.25-000001`` -> ``logs-tracectl-default``."""
    name = backing_index.removeprefix(".ds-")
    parts = name.split("-")
    while parts and (parts[-1].isdigit() or parts[-1].replace(".", "").isdigit()):
        parts.pop()
    return "-".join(parts)


def read_index(client: Any, index: str, run_id: str, task_id: str, attempt: int) -> LogCopy:
    """Every document of the attempt, paged by event.sequence; deduped by event id."""
    lines: dict[int, str] = {}
    streams: set[str] = set()
    documents = 0
    after = 0
    while True:
        body = {
            "size": INDEX_PAGE,
            "sort": [{"event.sequence": "asc"}],
            "_source": ["message", "event.sequence", "event.id"],
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"labels.run_id": run_id}},
                        {"term": {"labels.task_id": task_id}},
                        {"term": {"labels.attempt": str(attempt)}},
                        {"range": {"event.sequence": {"gt": after}}},
                    ]
                }
            },
        }
        hits = client.search(index, body)["hits"]["hits"]
        for hit in hits:
            documents += 1
            streams.add(data_stream_of(hit["_index"]))
            seq = int(hit["_source"]["event"]["sequence"])
            lines[seq] = str(hit["_source"].get("message", ""))
        # Copies of one line in two backing indices share a sequence: page past all of them.
        if len(hits) < INDEX_PAGE:
            break
        after = max(int(h["_source"]["event"]["sequence"]) for h in hits)
    return LogCopy(
        lines,
        {
            "data_streams": sorted(streams),
            "documents": documents,
            "duplicates": documents - len(lines),
        },
    )


def read_archive_copy(store: ArtifactStore, uri: str, sha256: str | None) -> LogCopy:
    data = store.open_bytes(uri)
    actual = hashlib.sha256(data).hexdigest()
    unpacked = read_archive(data)
    lines = {number: line.message for number, line in enumerate(unpacked.lines, start=1)}
    damage = None
    if sha256 and actual != sha256:
        damage = f"object sha256 {actual[:12]}… is not the recorded {sha256[:12]}…"
    if unpacked.error:
        damage = f"{damage + '; ' if damage else ''}gzip: {unpacked.error}"
    return LogCopy(
        lines, {"uri": uri, "sha256": sha256, "object_sha256": actual, "size": len(data)}, damage
    )
