"""Drains log spools that their runner left behind (killed, or Kafka still down at its end).

A runner's KafkaLogSink gives up waiting for Kafka after a bounded time so that the task can
end; what it could not deliver stays in <home>/spool/logs/<run>/<task>/<attempt>. The
leader runs ``keep_draining`` (``drain_orphans`` when it takes over, then every DRAIN_INTERVAL_S):
every spool whose lock no live process holds is resumed from its ack cursor and sent, in order,
to the configured topic. So are the status and OpenLineage spools of a replica that is gone
(<home>/spool/<kind>/<replica>: replicas share the home, docs/architecture.md).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from controller.config import Settings
from controller.emit.kafka_sink import DEFAULT_TOPIC as LINEAGE_TOPIC
from controller.emit.kafka_sink import SPOOL_KIND as LINEAGE_KIND
from controller.logs.deliveries import LogDeliveries, StatusDeliveries, log_ranges_path
from controller.logs.kafka_producer import SpooledProducer, parse_uri
from controller.logs.kafka_sink import DEFAULT_TOPIC, SPOOL_MAX_BYTES
from controller.logs.kafka_status import DEFAULT_TOPIC as STATUS_TOPIC
from controller.logs.kafka_status import SPOOL_KIND as STATUS_KIND
from controller.logs.kafka_transport import DeliveryHook
from controller.logs.spool import SpoolBusy

log = logging.getLogger(__name__)

# A runner gives up on Kafka while the controller runs (an outage longer than its close
# timeout): its lines must reach the index soon after Kafka is back, not at the next restart.
DRAIN_INTERVAL_S = 10.0


def orphan_spools(settings: Settings) -> list[Path]:
    """Spool folders that hold a segment file. A folder without one may be a spool being
    created: its writer takes the lock between mkdir and its first segment, and taking the
    lock first would make that writer fail."""
    root = settings.home / "spool" / "logs"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*/*") if p.is_dir() and any(p.glob("*.seg")))


def _ranges_hook(settings: Settings, folder: Path) -> LogDeliveries | None:
    """Where the drained lines landed goes beside the file record, as the runner's own sink
    would have written it: reconciliation reads the Kafka copy from those ranges."""
    run_id, task_id, attempt = folder.parts[-3:]
    if not attempt.isdigit():
        return None
    return LogDeliveries(log_ranges_path(settings, run_id, task_id, int(attempt)))


def drain_orphans(settings: Settings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Send what orphaned spools hold; one report per spool touched."""
    reports = _drain_replicas(settings, timeout_s)
    if not settings.log_sink.startswith("kafka://"):
        return reports
    bootstrap, topic = parse_uri(settings.log_sink, DEFAULT_TOPIC)
    for folder in orphan_spools(settings):
        hook = _ranges_hook(settings, folder)
        report = _drain(settings, folder, bootstrap, topic, hook, timeout_s)
        reports.extend([report] if report else [])
    return reports


def replica_spools(settings: Settings, kind: str) -> list[Path]:
    """The spools of KIND (status, openlineage-kafka) that hold records: one per replica
    (<home>/spool/<kind>/<replica>), and the one of a controller from before replicas."""
    root = settings.home / "spool" / kind
    if not root.is_dir():
        return []
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return [p for p in folders if any(p.glob("*.seg"))]


def _drain_replicas(settings: Settings, timeout_s: float) -> list[dict[str, Any]]:
    """The status and OpenLineage records a replica that is gone left in its spool: the
    leader sends them (a live replica holds its spool's lock, and is skipped)."""
    targets = [
        (STATUS_KIND, settings.status_events, STATUS_TOPIC, StatusDeliveries(settings)),
        (LINEAGE_KIND, settings.openlineage_target, LINEAGE_TOPIC, None),
    ]
    reports = []
    for kind, uri, default_topic, hook in targets:
        if not uri.startswith("kafka://"):
            continue
        bootstrap, topic = parse_uri(uri, default_topic)
        for folder in replica_spools(settings, kind):
            report = _drain(settings, folder, bootstrap, topic, hook, timeout_s)
            reports.extend([report] if report else [])
    return reports


def _drain(
    settings: Settings,
    folder: Path,
    bootstrap: str,
    topic: str,
    hook: DeliveryHook | None,
    timeout_s: float,
) -> dict[str, Any] | None:
    try:
        producer = SpooledProducer(
            bootstrap,
            topic,
            folder,
            SPOOL_MAX_BYTES,
            client_id=f"tracectl-spool-recovery-{folder.parent.name}-{folder.name}",
            client=settings.kafka_client,
            on_delivered=hook,
        )
    except SpoolBusy:
        return None  # its writer (a runner, a replica) is alive and sending
    delivered = producer.close(timeout_s)
    if not delivered:
        log.warning("orphaned spool %s not drained yet (%s)", folder, producer.last_error)
    return {"spool": str(folder), "delivered": delivered, **producer.stats()}


def keep_draining(
    settings: Settings, stop: threading.Event, interval_s: float = DRAIN_INTERVAL_S
) -> None:
    """``drain_orphans`` now, then every INTERVAL_S until STOP is set."""
    while True:
        try:
            drain_orphans(settings)
        except Exception:  # the next pass tries again; this thread must outlive any failure
            log.exception("draining orphaned log spools failed")
        if stop.wait(interval_s):
            return
