"""Log sink that ships every line to Kafka as an ECS-shaped JSON event.

One record per line, keyed by task id so one task's lines stay in one partition, in order.
``event.id`` = ``<task>:<attempt>:<seq>`` is stable across re-sends: the indexer writes it as
the document ``_id`` with op_type create, so the index holds each line exactly once.

``log.level``: a level word (ERROR, WARNING, INFO, DEBUG...) near the start of the line wins,
as written by logging libraries; otherwise stdout and system lines are ``info`` and stderr
lines ``error`` (what a program prints to stderr without a level is most often a traceback).

Lines go through an on-disk spool (<home>/spool/logs/<run>/<task>/<attempt>), bounded by
``SPOOL_MAX_BYTES``: Kafka being down delays lines, it does not lose or reorder them.
"""

from __future__ import annotations

import json
import re
import socket
from json.encoder import encode_basestring
from typing import Any

from controller.config import Settings
from controller.logs.deliveries import LogDeliveries, log_ranges_path
from controller.logs.kafka_producer import SpooledProducer, parse_uri
from controller.logs.kafka_transport import DeliveryHook
from controller.ports import LogLine

DEFAULT_TOPIC = "tracectl.logs"
DATASET = "tracectl.task"
SERVICE = "tracectl"
SPOOL_MAX_BYTES = 256 << 20
CLOSE_TIMEOUT_S = 30.0
LABELS = (
    "run_id",
    "task_id",
    "task_name",
    "attempt",
    "dag_id",
    "airflow_run_id",
    "pipeline",
    "team",
)

# Matched against the upper-cased head of the line: twice as fast as re.IGNORECASE.
_LEVEL = re.compile(r"\b(CRITICAL|FATAL|ERROR|WARNING|WARN|INFO|DEBUG|TRACE)\b")
_LEVELS = {
    "critical": "critical",
    "fatal": "critical",
    "error": "error",
    "warning": "warn",
    "warn": "warn",
    "info": "info",
    "debug": "debug",
    "trace": "trace",
}


def level_of(stream: str, message: str) -> str:
    head = message[:64].upper()
    # Most lines hold no level word, and these `in` tests cost a quarter of the regex.
    if (
        "INFO" in head
        or "ERROR" in head
        or "WARN" in head
        or "DEBUG" in head
        or "CRITICAL" in head
        or "FATAL" in head
        or "TRACE" in head
    ):
        match = _LEVEL.search(head)
        if match:
            return _LEVELS[match.group(1).lower()]
    return "error" if stream == "stderr" else "info"


def event_of(line: LogLine, labels: dict[str, str], context: dict[str, Any]) -> dict[str, Any]:
    """The ECS document for LINE (``context``: service/container/orchestrator/host fields)."""
    return {
        "@timestamp": line.timestamp.isoformat(),
        "message": line.message,
        "log": {"level": level_of(line.stream, line.message)},
        "event": {
            "id": f"{line.task_id}:{line.attempt}:{line.seq}",
            "sequence": line.seq,
            "dataset": DATASET,
            "kind": "event",
        },
        "labels": {
            **labels,
            "run_id": line.run_id,
            "task_id": line.task_id,
            "attempt": str(line.attempt),
            "stream": line.stream,
        },
        **context,
    }


def context_of(labels: dict[str, str]) -> dict[str, Any]:
    """ECS service/host/container/orchestrator fields, from the labels the runner knows."""
    context: dict[str, Any] = {"service": {"name": SERVICE}, "host": {"name": socket.gethostname()}}
    if labels.get("container_id") or labels.get("container_name"):
        context["container"] = {
            k: labels[f"container_{k}"] for k in ("id", "name") if labels.get(f"container_{k}")
        }
    if labels.get("namespace") or labels.get("pod_name"):
        kind, name = ("pod", labels["pod_name"]) if labels.get("pod_name") else ("", "")
        if not kind and labels.get("object_name"):
            kind, name = labels.get("object_kind", "job"), labels["object_name"]
        context["orchestrator"] = {
            "type": "kubernetes",
            "namespace": labels.get("namespace", ""),
            "resource": {"type": kind or "pod", "name": name},
        }
    return context


class EventEncoder:
    """``json.dumps(event_of(...))`` for one task, fast: only the per-line fields are encoded
    per line; the rest (labels, service, host...) is serialized once. Same JSON value."""

    def __init__(self, labels: dict[str, str], context: dict[str, Any]) -> None:
        self.labels = labels
        self.context = context
        self._cache: dict[tuple[str, str, int, str], tuple[str, str]] = {}

    def _parts(self, line: LogLine) -> tuple[str, str]:
        key = (line.run_id, line.task_id, line.attempt, line.stream)
        parts = self._cache.get(key)
        if parts is None:
            labels = {
                **self.labels,
                "run_id": line.run_id,
                "task_id": line.task_id,
                "attempt": str(line.attempt),
                "stream": line.stream,
            }
            tail = json.dumps({"labels": labels, **self.context}, ensure_ascii=False)[1:]
            id_prefix = json.dumps(f"{line.task_id}:{line.attempt}:")[:-1]
            parts = self._cache[key] = (id_prefix, tail)
        return parts

    def encode(self, line: LogLine) -> bytes:
        id_prefix, tail = self._parts(line)
        return (
            f'{{"@timestamp": "{line.timestamp.isoformat()}", '
            # encode_basestring = json.dumps(str, ensure_ascii=False) minus its Python wrapper
            f'"message": {encode_basestring(line.message)}, '
            f'"log": {{"level": "{level_of(line.stream, line.message)}"}}, '
            f'"event": {{"id": {id_prefix}{line.seq}", "sequence": {line.seq}, '
            f'"dataset": "{DATASET}", "kind": "event"}}, {tail}'
        ).encode()


class KafkaLogSink:
    def __init__(
        self,
        settings: Settings,
        labels: dict[str, str],
        spool_max_bytes: int = SPOOL_MAX_BYTES,
        on_delivered: DeliveryHook | None = None,
    ) -> None:
        """ON_DELIVERED: called from the sender thread after each acknowledged chunk of lines
        with where they landed (``Delivered``: topic, key = task id, partition, first/last
        offset, record count); lines are sent in sequence order."""
        bootstrap, topic = parse_uri(settings.log_sink, DEFAULT_TOPIC)
        self.labels = {k: str(labels[k]) for k in LABELS if labels.get(k)}
        self.context = context_of(labels)
        run_id, task_id, attempt = labels["run_id"], labels["task_id"], labels["attempt"]
        self.key = task_id.encode()
        self._encoder = EventEncoder(self.labels, self.context)
        self.producer = SpooledProducer(
            bootstrap,
            topic,
            settings.home / "spool" / "logs" / run_id / task_id / attempt,
            spool_max_bytes,
            client_id=f"tracectl-logs-{task_id}",
            client=settings.kafka_client,
            # By default the ranges go beside the file record, for reconciliation.
            on_delivered=on_delivered
            or LogDeliveries(log_ranges_path(settings, run_id, task_id, int(attempt))),
        )
        self._closed = False

    def emit(self, line: LogLine) -> None:
        self.producer.put(self.key, self._encoder.encode(line))

    def flush(self) -> None:
        self.producer.flush(CLOSE_TIMEOUT_S)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.producer.close(CLOSE_TIMEOUT_S)

    def stats(self) -> dict[str, Any]:
        return self.producer.stats()
