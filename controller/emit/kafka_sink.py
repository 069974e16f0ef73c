"""OpenLineage events to a Kafka topic, through the spooled producer the log sink uses.

Keyed by the tracectl run id, so a run's events share a partition and keep their order. The
producer (controller/logs/kafka_producer.py) spools on disk and reconnects while Kafka is
down; its spool outlives a restart.
"""

from __future__ import annotations

from typing import Any

from controller.config import Settings
from controller.logs.kafka_producer import CLOSE_TIMEOUT_S, controller_producer

DEFAULT_TOPIC = "openlineage"
SPOOL_KIND = "openlineage-kafka"  # <home>/spool/openlineage-kafka/<replica>


class KafkaLineageSink:
    def __init__(self, settings: Settings) -> None:
        self.producer = controller_producer(
            settings,
            settings.openlineage_target,
            DEFAULT_TOPIC,
            spool=SPOOL_KIND,
            client_id="tracectl-openlineage",
        )

    def put(self, run_id: str, event: bytes) -> bool:
        return self.producer.put(run_id.encode(), event)

    def flush(self, timeout_s: float) -> bool:
        return self.producer.flush(timeout_s)

    def close(self) -> None:
        self.producer.close(CLOSE_TIMEOUT_S)

    def stats(self) -> dict[str, Any]:
        return self.producer.stats()
