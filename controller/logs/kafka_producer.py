"""A Kafka producer that never blocks its caller and never loses an accepted record.

Callers ``put`` records into a Spool (spool.py); one sender thread reads the spool in order,
hands a chunk to the transport (kafka_transport.py: kafka-python or confluent-kafka), waits for
Kafka to acknowledge all of it and only then forgets it. When Kafka is unreachable the chunk is
read again after a backoff (controller/backoff.py: doubling from 0.5 s to 10 s, jittered), from
the same place: nothing overtakes it.

After each acknowledged chunk the sender calls ``on_delivered`` (if given) with the
``Delivered`` ranges of the chunk: which key's records landed at which partition and offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from controller.backoff import Backoff
from controller.config import Settings
from controller.logs.kafka_transport import (
    CHUNK_TIMEOUT_S,
    DEFAULT_CLIENT,
    DeliveryHook,
    KafkaTransport,
    ensure_topic,
    open_transport,
)
from controller.logs.spool import Spool

log = logging.getLogger(__name__)

CHUNK_RECORDS = 20000
SPOOL_MAX_BYTES = 64 << 20  # of a controller-wide producer (status events, OpenLineage)
CLOSE_TIMEOUT_S = 10.0


def replica_spool(home: Path, kind: str, replica: str) -> Path:
    """A controller replica's own spool of KIND: replicas share the home, and a spool has
    one writer; the leader drains those of replicas that are gone (logs/spool_recovery.py)."""
    return home / "spool" / kind / replica


def parse_uri(uri: str, default_topic: str) -> tuple[str, str]:
    """``kafka://host:port[,host:port][/topic]`` -> (bootstrap servers, topic)."""
    parsed = urlparse(uri)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise ValueError(f"not a Kafka URI (kafka://host:port[/topic]): {uri!r}")
    return parsed.netloc, parsed.path.strip("/") or default_topic


class SpooledProducer:
    """Sends ``(key, value)`` records through a spool to one Kafka topic, in order."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool_dir: Path,
        max_spool_bytes: int,
        client_id: str,
        client: str = DEFAULT_CLIENT,
        on_delivered: DeliveryHook | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self.client = client
        self.on_delivered = on_delivered
        self.spool = Spool(spool_dir, max_spool_bytes)
        self.sent = 0
        self.outages = 0
        self.last_error = ""
        self._transport: KafkaTransport | None = None
        self.backoff = Backoff()
        self._topic_ready = False
        self._wake = threading.Condition()
        self._waiting = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"{client_id}-sender", daemon=True)
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
        if self._transport is not None:
            self._transport.close(5)
            self._transport = None
        if not delivered:
            log.error(
                "%s: %d bytes of records not delivered to Kafka topic %s; kept in %s",
                self.client_id,
                self.spool.pending_bytes,
                self.topic,
                self.spool.folder,
            )
        self.spool.close()
        return delivered

    def stats(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "sent": self.sent,
            "spooled_bytes": self.spool.pending_bytes,
            "dropped": self.spool.dropped,
            "outages": self.outages,
            "last_error": self.last_error,
        }

    # -- sender thread ------------------------------------------------------------------
    def _connect(self) -> KafkaTransport | None:
        try:
            if not self._topic_ready:
                ensure_topic(self.bootstrap, self.topic)
                self._topic_ready = True
            return open_transport(self.client, self.bootstrap, self.topic, self.client_id)
        except Exception as exc:  # any failure is an outage: the sender thread must survive
            self.last_error = f"connect: {exc!r}"
            return None

    def _send_chunk(self, transport: KafkaTransport, chunk: list[tuple[bytes, bytes]]) -> bool:
        try:
            delivered = transport.send(chunk)
        except Exception as exc:  # any failure is an outage: the sender thread must survive
            self.last_error = f"send: {exc!r}"
            return False
        if self.on_delivered is not None:
            try:
                self.on_delivered(delivered)
            except Exception:  # a listener's bug must not stop delivery
                log.exception("%s: on_delivered hook failed", self.client_id)
        return True

    def _drop_transport(self) -> None:
        if self._transport is not None:
            try:
                self._transport.abort()
            except Exception:
                log.debug("aborting a failed transport", exc_info=True)
            self._transport = None

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
            if self._transport is None:
                self._transport = self._connect()
            if self._transport is not None and self._send_chunk(self._transport, chunk):
                self.spool.ack()
                self.sent += len(chunk)
                self.backoff.reset()
                continue
            self.spool.rewind()
            self._drop_transport()
            self.outages += 1
            delay = self.backoff.next()
            log.warning(
                "%s: Kafka unreachable (%s); retrying in %.1fs, %d bytes spooled",
                self.client_id,
                self.last_error,
                delay,
                self.spool.pending_bytes,
            )
            with self._wake:
                self._wake.wait(delay)


def controller_producer(
    settings: Settings,
    uri: str,
    default_topic: str,
    spool: str,
    client_id: str,
    on_delivered: DeliveryHook | None = None,
) -> SpooledProducer:
    """The controller's own producer to the topic of URI, spooled in this replica's own
    <home>/spool/SPOOL/<replica>."""
    bootstrap, topic = parse_uri(uri, default_topic)
    return SpooledProducer(
        bootstrap,
        topic,
        replica_spool(settings.home, spool, settings.replica),
        SPOOL_MAX_BYTES,
        client_id=client_id,
        client=settings.kafka_client,
        on_delivered=on_delivered,
    )
