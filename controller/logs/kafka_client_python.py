"""kafka-python transport: pure Python, no native library; the default client.

Settings favour durability and per-key order: ``acks=all`` with the idempotent producer
(kafka-python 3 supports it; it keeps order with up to 5 requests in flight), unbounded retries
within ``delivery_timeout_ms``, linger + large batches, and the shared codec choice
(``kafka_transport.compression()``).

Its per-record ``send()`` costs about 25 us of Python on this machine, which caps one process
near 40,000 records/s: ``kafka_client_confluent.py`` is the faster choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from controller.logs.kafka_transport import (
    CHUNK_TIMEOUT_S,
    CONNECT_TIMEOUT_MS,
    Delivered,
    RangeCollector,
    compression,
)


def producer_config(bootstrap: str, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "delivery_timeout_ms": int(CHUNK_TIMEOUT_S * 1000),
        "request_timeout_ms": 5000,
        "linger_ms": 5,
        "batch_size": 512 * 1024,
        "compression_type": compression(),
        "max_block_ms": 5000,
        "bootstrap_timeout_ms": CONNECT_TIMEOUT_MS,
        "reconnect_backoff_max_ms": 1000,
    }


class KafkaPythonTransport:
    def __init__(self, bootstrap: str, topic: str, client_id: str) -> None:
        self.topic = topic
        self._producer = KafkaProducer(**producer_config(bootstrap, client_id))
        self._partitions: dict[bytes, int] = {}

    def _partition(self, key: bytes) -> int:
        """The default partitioner's choice (murmur2, as the Java client), computed once per
        key: in pure Python it would otherwise cost as much per record as the rest of send."""
        partition = self._partitions.get(key)
        if partition is None:
            known = sorted(self._producer.partitions_for(self.topic))
            partition = known[(murmur2(key) & 0x7FFFFFFF) % len(known)]
            self._partitions[key] = partition
        return partition

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> list[Delivered]:
        send, topic, partition_of = self._producer.send, self.topic, self._partition
        futures = [
            send(topic, key=key, value=value, partition=partition_of(key)) for key, value in records
        ]
        self._producer.flush(timeout=CHUNK_TIMEOUT_S)
        acked = RangeCollector(topic)
        for (key, _), future in zip(records, futures, strict=True):
            if not future.succeeded():
                raise future.exception or TimeoutError("record not acknowledged in time")
            acked.add(key, future.value.partition, future.value.offset)
        return acked.ranges()

    def abort(self) -> None:
        # Nothing it still holds may be sent behind the records read again: close at once.
        self._producer.close(timeout=0)

    def close(self, timeout_s: float) -> None:
        self._producer.close(timeout=timeout_s)
