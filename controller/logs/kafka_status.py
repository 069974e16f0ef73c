"""Publishes task status events to Kafka (topic ``tracectl.status``, key = task id).

Same producer settings and spool as the log sink: ``publish`` never blocks the supervisor,
and events published while Kafka is down are sent, in order, when it returns. The spool
(<home>/spool/status) outlives a controller restart and is resumed by the next controller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from controller.config import Settings
from controller.logs.deliveries import StatusDeliveries
from controller.logs.kafka_producer import CLOSE_TIMEOUT_S, controller_producer

DEFAULT_TOPIC = "tracectl.status"
SPOOL_KIND = "status"  # <home>/spool/status/<replica>


class KafkaStatusPublisher:
    publishes = True

    def __init__(self, settings: Settings) -> None:
        self.producer = controller_producer(
            settings,
            settings.status_events,
            DEFAULT_TOPIC,
            spool=SPOOL_KIND,
            client_id="tracectl-status",
            on_delivered=StatusDeliveries(settings),
        )

    def publish(self, event: Mapping[str, Any]) -> None:
        key = str(event.get("labels", {}).get("task_id", "")).encode()
        self.producer.put(key, json.dumps(event, default=str, ensure_ascii=False).encode())

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        return self.producer.flush(timeout_s)

    def close(self) -> None:
        self.producer.close(CLOSE_TIMEOUT_S)
