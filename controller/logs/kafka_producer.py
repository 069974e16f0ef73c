"""A Kafka producer that never blocks its caller and never loses an accepted record.

Callers ``put`` records into a Spool (spool.py); one sender thread reads the spool in order,
sends a chunk, waits for Kafka to acknowledge all of it and only then forgets it. When Kafka
is unreachable the chunk is read again later, from the same place: nothing overtakes it.

Producer settings favour durability and per-key order: ``acks=all`` with the idempotent
producer (kafka-python 3 supports it; it keeps order with up to 5 requests in flight),
unbounded retries within ``delivery_timeout_ms``, linger + large batches, and the best
compression codec whose library is installed (zstd, lz4, then gzip from the standard library).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.codec import has_gzip, has_lz4, has_zstd
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from controller.logs.spool import Spool

log = logging.getLogger(__name__)

TOPIC_PARTITIONS = 3
CHUNK_RECORDS = 20000
CHUNK_TIMEOUT_S = 15.0  # longer than this without acks: treat Kafka as gone, read again
RECONNECT_S = 1.0
CONNECT_TIMEOUT_MS = 3000


def parse_uri(uri: str, default_topic: str) -> tuple[str, str]:
    """``kafka://host:port[,host:port][/topic]`` -> (bootstrap servers, topic)."""
    parsed = urlparse(uri)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise ValueError(f"not a Kafka URI (kafka://host:port[/topic]): {uri!r}")
    return parsed.netloc, parsed.path.strip("/") or default_topic


def compression() -> str | None:
    for name, available in (("zstd", has_zstd), ("lz4", has_lz4), ("gzip", has_gzip)):
        if available():
            return name
    return None


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


def ensure_topic(bootstrap: str, topic: str, partitions: int = TOPIC_PARTITIONS) -> None:
    """Create TOPIC with PARTITIONS unless it exists (broker auto-creation would give 1)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tracectl-admin",
                             bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
                             request_timeout_ms=10000)
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                          replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


class SpooledProducer:
    """Sends ``(key, value)`` records through a spool to one Kafka topic, in order."""

    def __init__(self, bootstrap: str, topic: str, spool_dir: Path, max_spool_bytes: int,
                 client_id: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self.spool = Spool(spool_dir, max_spool_bytes)
        self.sent = 0
        self.outages = 0
        self.last_error = ""
        self._producer: KafkaProducer | None = None
        self._topic_ready = False
        self._partitions: dict[bytes, int] = {}
        self._wake = threading.Condition()
        self._waiting = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"{client_id}-sender",
                                        daemon=True)
        self._thread.start()

    # -- caller side --------------------------------------------------------------------
    def put(self, key: bytes, value: bytes) -> bool:
        """Queue one record; False when the spool is full and the record was dropped."""
        accepted = self.spool.append(key, value)
        if self._waiting:  # a notify per record would cost more than the record itself
            with self._wake:
                self._wake.notify()
        return accepted

    def flush(self, timeout_s: float) -> bool:
        """Wait until Kafka acknowledged every accepted record; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.spool.empty:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float) -> bool:
        """Flush (bounded), then stop. Undelivered records stay in the spool folder."""
        delivered = self.flush(timeout_s)
        self._closing = True
        with self._wake:
            self._wake.notify()
        self._thread.join(timeout=CHUNK_TIMEOUT_S + 5)
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
        if not delivered:
            log.error("%s: %d bytes of records not delivered to Kafka topic %s; kept in %s",
                      self.client_id, self.spool.pending_bytes, self.topic, self.spool.folder)
        self.spool.close()
        return delivered

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "spooled_bytes": self.spool.pending_bytes,
                "dropped": self.spool.dropped, "outages": self.outages,
                "last_error": self.last_error}

    # -- sender thread ------------------------------------------------------------------
    def _connect(self) -> KafkaProducer | None:
        try:
            if not self._topic_ready:
                ensure_topic(self.bootstrap, self.topic)
                self._topic_ready = True
            return KafkaProducer(**producer_config(self.bootstrap, self.client_id))
        except Exception as exc:  # any failure is an outage: the sender thread must survive
            self.last_error = f"connect: {exc!r}"
            return None

    def _partition(self, producer: KafkaProducer, key: bytes) -> int:
        """The default partitioner's choice (murmur2, as the Java client), computed once per
        key: in pure Python it would otherwise cost as much per record as the rest of send."""
        partition = self._partitions.get(key)
        if partition is None:
            known = sorted(producer.partitions_for(self.topic))
            partition = known[(murmur2(key) & 0x7FFFFFFF) % len(known)]
            self._partitions[key] = partition
        return partition

    def _send_chunk(self, producer: KafkaProducer, chunk: list[tuple[bytes, bytes]]) -> bool:
        try:
            futures = [producer.send(self.topic, key=key, value=value,
                                     partition=self._partition(producer, key))
                       for key, value in chunk]
            producer.flush(timeout=CHUNK_TIMEOUT_S)
            failed = next((f.exception for f in futures if f.failed()), None)
            if failed is not None:
                raise failed
        except Exception as exc:  # any failure is an outage: the sender thread must survive
            self.last_error = f"send: {exc!r}"
            return False
        return True

    def _drop_producer(self) -> None:
        if self._producer is not None:
            # Nothing it still holds may be sent behind the records read again: abort it.
            try:
                self._producer.close(timeout=0)
            except Exception:
                log.debug("closing a failed producer", exc_info=True)
            self._producer = None
            self._partitions.clear()

    def _run(self) -> None:
        while not self._closing:
            chunk = self.spool.read(CHUNK_RECORDS)
            if not chunk:
                with self._wake:
                    self._waiting = True
                    # Re-check under the flag: a record put just before it was set is seen.
                    if self.spool.empty:
                        self._wake.wait(0.5)
                    self._waiting = False
                continue
            if self._producer is None:
                self._producer = self._connect()
            if self._producer is not None and self._send_chunk(self._producer, chunk):
                self.spool.ack()
                self.sent += len(chunk)
                continue
            self.spool.rewind()
            self._drop_producer()
            self.outages += 1
            log.warning("%s: Kafka unreachable (%s); %d bytes spooled", self.client_id,
                        self.last_error, self.spool.pending_bytes)
            with self._wake:
                self._wake.wait(RECONNECT_S)
