"""Drains log spools that their runner left behind (killed, or Kafka still down at its end).

A runner's KafkaLogSink gives up waiting for Kafka after a bounded time so that the task can
end; what it could not deliver stays in <home>/spool/logs/<run>/<task>/<attempt>. The
controller calls ``drain_orphans`` (at start and then now and then): every spool whose lock no
live process holds is resumed from its ack cursor and sent, in order, to the configured topic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from controller.config import Settings
from controller.logs.kafka_producer import SpooledProducer, parse_uri
from controller.logs.kafka_sink import DEFAULT_TOPIC, SPOOL_MAX_BYTES
from controller.logs.spool import SpoolBusy

log = logging.getLogger(__name__)


def orphan_spools(settings: Settings) -> list[Path]:
    root = settings.home / "spool" / "logs"
    return sorted(p for p in root.glob("*/*/*") if p.is_dir()) if root.is_dir() else []


def drain_orphans(settings: Settings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Send what orphaned spools hold; one report per spool touched."""
    if not settings.log_sink.startswith("kafka://"):
        return []
    bootstrap, topic = parse_uri(settings.log_sink, DEFAULT_TOPIC)
    reports = []
    for folder in orphan_spools(settings):
        try:
            producer = SpooledProducer(bootstrap, topic, folder, SPOOL_MAX_BYTES,
                                       client_id=f"tracectl-spool-recovery-{folder.parent.name}")
        except SpoolBusy:
            continue  # its runner is alive and sending
        delivered = producer.close(timeout_s)
        reports.append({"spool": str(folder), "delivered": delivered, **producer.stats()})
        if not delivered:
            log.warning("orphaned spool %s not drained yet (%s)", folder, producer.last_error)
    return reports
