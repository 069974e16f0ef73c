"""Repairing the copies of a task attempt's log that reconciliation found wrong.

- Lines missing from (or different in) the index or Kafka are re-shipped with their original
  event ids and sequence numbers, from the archive when it is intact, else from the file
  record: through Kafka when a Kafka sink is configured (the indexer dedupes by event id, so a
  line already indexed stays one document), else written straight to the index.
- A missing, truncated or corrupt archive object is rewritten from the file record; the new
  sha256 is recorded and the damaged object's kept as ``previous_sha256``.

The caller (reconcile.py) checks again afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.logs.archive import archive_task_log, read_archive
from controller.logs.deliveries import append_ranges, log_ranges_path
from controller.logs.file_sink import FileLogReader
from controller.logs.kafka_sink import DEFAULT_TOPIC, LABELS, context_of, event_of
from controller.logs.kafka_transport import Delivered, RangeCollector
from controller.ports import LogLine
from controller.store.schema import RunRow, TaskRow

if TYPE_CHECKING:
    from controller.logs.reconcile import Attempt, CopyResult, LogReconciler

log = logging.getLogger("tracectl.logs.reconcile")
SEND_TIMEOUT_S = 60.0
DEFAULT_STREAM = "logs-tracectl-default"


def repair_attempt(
    reconciler: LogReconciler,
    target: Attempt,
    reference: dict[int, str],
    results: dict[str, CopyResult],
) -> dict[str, dict[str, Any]]:
    """Repair what RESULTS found wrong; return, per copy repaired, what was done."""
    repaired: dict[str, dict[str, Any]] = {}
    archive = results["archive"]
    record_intact = results["record"].status == "ok"
    if archive.status in ("missing", "corrupt") and record_intact:
        repaired["archive"] = rewrite_archive(reconciler, target, archive)
    wanted = set(results["index"].missing) | set(results["index"].differing)
    if results["kafka"].mismatch:
        wanted |= set(results["kafka"].missing) | set(results["kafka"].differing)
    wanted &= reference.keys()
    if wanted:
        source = "archive" if archive.status == "ok" else "record"
        lines = source_lines(reconciler, target, sorted(wanted), source)
        if results["index"].differing and reconciler.index_client is not None:
            forget_documents(reconciler, target, results["index"].differing)
        via = ship(reconciler, target, lines)
        facts = {"reshipped": len(lines), "via": via, "source": source}
        for name in ("index", "kafka"):
            if results[name].mismatch:
                repaired[name] = facts
    return repaired


def rewrite_archive(
    reconciler: LogReconciler, target: Attempt, result: CopyResult
) -> dict[str, Any]:
    stored = archive_task_log(
        reconciler.settings, reconciler.store, target.run_id, target.task_id, target.attempt
    )
    previous = result.detail.get("object_sha256") or result.detail.get("sha256")
    log.warning(
        "rewrote the archive of %s attempt %d from the file record (was %s, now %s)",
        target.task_id,
        target.attempt,
        previous,
        stored["sha256"],
    )
    return {
        "uri": stored["uri"],
        "sha256": stored["sha256"],
        "previous_sha256": previous,
        "rewritten_from": "record",
    }


def source_lines(
    reconciler: LogReconciler, target: Attempt, seqs: list[int], source: str
) -> list[LogLine]:
    """The lines numbered SEQS with their timestamp and stream, from SOURCE."""
    wanted = set(seqs)
    if source == "archive":
        uri = str((target.recorded.get("archive") or {}).get("uri"))
        unpacked = read_archive(reconciler.store.open_bytes(uri))
        return [
            LogLine(
                target.run_id,
                target.task_id,
                target.attempt,
                seq,
                line.stream,
                line.message,
                datetime.fromisoformat(line.timestamp),
            )
            for seq, line in enumerate(unpacked.lines, start=1)
            if seq in wanted
        ]
    reader = FileLogReader(reconciler.settings)
    lines = reader.read(target.run_id, target.task_id, target.attempt, 0, 1 << 62)
    return [line for line in lines if line.seq in wanted]


def event_labels(reconciler: LogReconciler, target: Attempt) -> dict[str, str]:
    """The labels the runner put on the attempt's lines (kafka_sink.LABELS), from the store."""
    with reconciler.db.read() as session:
        task = session.get(TaskRow, target.task_id)
        run = session.get(RunRow, target.run_id)
        values = {
            "run_id": target.run_id,
            "task_id": target.task_id,
            "task_name": task.name if task else "",
            "attempt": str(target.attempt),
            "dag_id": (run.airflow_dag_id if run else None) or "",
            "airflow_run_id": (run.airflow_run_id if run else None) or "",
            "pipeline": run.pipeline if run else "",
            "team": task.team if task else "",
        }
    return {k: values[k] for k in LABELS if values.get(k)}


def events(
    reconciler: LogReconciler, target: Attempt, lines: Iterable[LogLine]
) -> list[dict[str, Any]]:
    labels = event_labels(reconciler, target)
    context = context_of(labels)
    return [event_of(line, labels, context) for line in lines]


def ship(reconciler: LogReconciler, target: Attempt, lines: list[LogLine]) -> str:
    """Send LINES again: through Kafka if configured, else straight into the index."""
    documents = events(reconciler, target, lines)
    bootstrap = reconciler.kafka_bootstrap
    if bootstrap is not None:
        delivered = send_to_kafka(bootstrap, reconciler.settings.log_sink, target, documents)
        # The re-sent records are part of the Kafka copy from now on.
        append_ranges(
            log_ranges_path(reconciler.settings, target.run_id, target.task_id, target.attempt),
            delivered,
        )
        return "kafka"
    if reconciler.index_client is not None:
        write_to_index(reconciler, documents)
        return "index"
    return "nowhere"


def send_to_kafka(
    bootstrap: str, uri: str, target: Attempt, documents: list[dict[str, Any]]
) -> list[Delivered]:
    import json

    from kafka import KafkaProducer

    from controller.logs.kafka_producer import parse_uri

    topic = parse_uri(uri, DEFAULT_TOPIC)[1]
    key = target.task_id.encode()
    # The default partitioner is murmur2 of the key, as the sink's: the same partition.
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        client_id="tracectl-reconcile-repair",
        linger_ms=5,
    )
    try:
        futures = [
            producer.send(topic, key=key, value=json.dumps(doc, ensure_ascii=False).encode())
            for doc in documents
        ]
        producer.flush(timeout=SEND_TIMEOUT_S)
        collector = RangeCollector(topic)
        for future in futures:
            metadata = future.get(timeout=SEND_TIMEOUT_S)
            collector.add(key, metadata.partition, metadata.offset)
        return collector.ranges()
    finally:
        producer.close(timeout=5)


def data_stream(reconciler: LogReconciler) -> str:
    pattern = reconciler.index_pattern
    return pattern.replace("*", "default") if pattern.endswith("-*") else DEFAULT_STREAM


def write_to_index(reconciler: LogReconciler, documents: list[dict[str, Any]]) -> None:
    client, stream = reconciler.index_client, data_stream(reconciler)
    assert client is not None  # callers check that an index is configured
    for doc in documents:
        # op_type create with _id = event.id, as the indexer writes: never a second copy.
        client.create(stream, doc["event"]["id"], doc)
    client.refresh(stream)


def forget_documents(reconciler: LogReconciler, target: Attempt, seqs: list[int]) -> None:
    """Delete index documents whose message differs from the record, so that the re-shipped
    line (same _id, op_type create) can take their place."""
    ids = [f"{target.task_id}:{target.attempt}:{seq}" for seq in seqs]
    assert reconciler.index_client is not None  # callers check that an index is configured
    reconciler.index_client.delete_ids(reconciler.index_pattern, ids)
