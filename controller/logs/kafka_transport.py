"""The small interface between the spooled producer and a Kafka client library.

A transport sends one chunk of ``(key, value)`` records to one topic, in order, and returns only
when Kafka acknowledged every record (``acks=all``), or raises. Two implementations, chosen by
``Settings.kafka_client`` (``TRACECTL_KAFKA_CLIENT``):

- ``kafka-python`` (``kafka_client_python.py``): pure Python, the default;
- ``confluent`` (``kafka_client_confluent.py``): confluent-kafka, i.e. librdkafka in C.

Both use the same partitioner (murmur2 of the key, as the Java client), so switching client, or
draining a spool with the other one, keeps a task's lines in the same partition, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.codec import has_gzip, has_lz4, has_zstd
from kafka.errors import TopicAlreadyExistsError

KAFKA_CLIENTS = ("kafka-python", "confluent")
DEFAULT_CLIENT = "kafka-python"
TOPIC_PARTITIONS = 3
CHUNK_TIMEOUT_S = 15.0  # longer than this without acks: treat Kafka as gone, read again
CONNECT_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class Delivered:
    """RECORDS records keyed KEY are in TOPIC partition PARTITION at offsets FIRST..LAST.

    In send order; other keys' records may sit between them in the same partition (a partition
    holds many tasks), so LAST - FIRST + 1 >= RECORDS.
    """

    topic: str
    key: bytes
    partition: int
    first_offset: int
    last_offset: int
    records: int


# Called by the sender thread after each acknowledged chunk, once per (key, partition) in it.
DeliveryHook = Callable[[Sequence[Delivered]], None]


class KafkaTransport(Protocol):
    def send(self, records: Sequence[tuple[bytes, bytes]]) -> list[Delivered]:
        """Send RECORDS in order; return once all are acknowledged. Raises on any failure."""
        ...

    def abort(self) -> None:
        """Drop what is still held, unsent: the caller sends it again from the spool."""
        ...

    def close(self, timeout_s: float) -> None: ...


def compression() -> str | None:
    """The best codec whose Python library is installed (zstd, lz4, then gzip from the standard
    library), for both clients: librdkafka has them all built in, but a consumer in Python
    (the local shipper, tests) can only read what kafka-python can decompress here."""
    for name, available in (("zstd", has_zstd), ("lz4", has_lz4), ("gzip", has_gzip)):
        if available():
            return name
    return None


def ensure_topic(bootstrap: str, topic: str, partitions: int = TOPIC_PARTITIONS) -> None:
    """Create TOPIC with PARTITIONS unless it exists (broker auto-creation would give 1)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="tracectl-admin",
        bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
        request_timeout_ms=10000,
    )
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


class RangeCollector:
    """Folds per-record ``(key, partition, offset)`` acks into ``Delivered`` ranges."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._ranges: dict[tuple[bytes, int], list[int]] = {}

    def add(self, key: bytes, partition: int, offset: int) -> None:
        span = self._ranges.get((key, partition))
        if span is None:
            self._ranges[(key, partition)] = [offset, offset, 1]
        else:
            span[0] = min(span[0], offset)
            span[1] = max(span[1], offset)
            span[2] += 1

    def ranges(self) -> list[Delivered]:
        return [
            Delivered(self.topic, key, partition, first, last, count)
            for (key, partition), (first, last, count) in self._ranges.items()
        ]


def open_transport(client: str, bootstrap: str, topic: str, client_id: str) -> KafkaTransport:
    """Connect CLIENT (one of KAFKA_CLIENTS) to TOPIC, creating it if missing; raises when Kafka
    cannot be reached."""
    if client == "kafka-python":
        from controller.logs.kafka_client_python import KafkaPythonTransport

        return KafkaPythonTransport(bootstrap, topic, client_id)
    if client == "confluent":
        from controller.logs.kafka_client_confluent import ConfluentTransport

        return ConfluentTransport(bootstrap, topic, client_id)
    raise ValueError(f"unknown Kafka client {client!r}: expected one of {KAFKA_CLIENTS}")
