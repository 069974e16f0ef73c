"""Kafka -> OpenSearch log shipper for the local stack (a stand-in for production's Logstash).

Consumes JSON log events from a Kafka topic in a consumer group and bulk-indexes them with
``_id`` = the event's ``event.id``, so a re-delivered event lands on the document it already
made: the index holds each event exactly once. Offsets are committed only after OpenSearch
accepted the whole batch; on failure the consumer seeks back and the batch is retried.

Configuration comes from the environment (deploy/local/shipper sets it):
  TRACECTL_KAFKA_BOOTSTRAP, TRACECTL_OPENSEARCH_URL (may carry user:password@),
  TRACECTL_SHIPPER_TOPIC (tracectl.logs), TRACECTL_SHIPPER_INDEX (logs-tracectl-default),
  TRACECTL_SHIPPER_GROUP (tracectl-shipper), TRACECTL_SHIPPER_PORT (9611, health endpoint),
  TRACECTL_SHIPPER_TEMPLATE (':'-separated index template files; the first accepted is
  installed at start; empty to skip).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

log = logging.getLogger("shipper")

# Statuses a bulk item may end with that still mean "this event is in the index".
INDEXED = {200, 201}
ALREADY_THERE = 409  # op_type=create on an _id that exists: a re-delivery
# Rejections that retrying cannot fix (bad mapping, unparsable value): logged and dropped, like
# Logstash does without a dead letter queue, so one poisoned event cannot stall the pipeline.
PERMANENT = {400, 403, 404, 405}


class State:
    """What the health endpoint reports; written by the shipping loop only."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.assigned: list[str] = []
        self.indexed = 0
        self.duplicates = 0
        self.dropped = 0
        self.last_error = ""
        self.last_poll = 0.0
        self.opensearch_ok = False

    def healthy(self) -> bool:
        return bool(self.assigned) and self.opensearch_ok and time.time() - self.last_poll < 15

    def as_json(self) -> bytes:
        body = dict(vars(self), healthy=self.healthy())
        return json.dumps(body).encode()


def lookup(doc: dict[str, Any], path: str) -> Any:
    """Read an ECS field written either flat ("event.id": ...) or nested ({"event": {"id"}})."""
    if path in doc:
        return doc[path]
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def to_action(record: Any) -> tuple[str, dict[str, Any]]:
    """(document id, document) for one Kafka record."""
    coordinates = f"{record.topic}-{record.partition}-{record.offset}"
    try:
        doc = json.loads(record.value)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except ValueError:
        # Keep what cannot be parsed, tagged the way Logstash's json filter tags it.
        doc = {"message": record.value.decode(errors="replace"), "tags": ["_jsonparsefailure"]}
    if lookup(doc, "@timestamp") is None:
        ts = record.timestamp / 1000 if record.timestamp and record.timestamp > 0 else time.time()
        doc["@timestamp"] = datetime.fromtimestamp(ts, UTC).isoformat()
    event_id = lookup(doc, "event.id")
    # No event.id: the record's coordinates are just as stable across re-deliveries.
    return (str(event_id) if event_id not in (None, "") else coordinates), doc


def install_template(client: OpenSearch, paths: str) -> None:
    """Install the first index template (of a ':'-separated list) that OpenSearch accepts.

    The production template (logstash/index-template.json) may use Elasticsearch-only
    features; the local minimal one then stands in so the index still gets keyword fields.
    """
    for path in filter(None, paths.split(":")):
        try:
            body = json.loads(Path(path).read_text())
            name = body.pop("name", None) or "tracectl-logs"
            client.indices.put_index_template(name=name, body=body)
            log.info("index template %s installed from %s", name, path)
            return
        except Exception as exc:
            log.warning("could not install index template from %s: %s", path, exc)


def ensure_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tracectl-shipper-admin")
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            log.info("created topic %s", topic)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def bulk(
    client: OpenSearch, index: str, actions: list[tuple[str, dict[str, Any]]], state: State
) -> bool:
    """Index the batch; True when every event is in the index (or permanently rejected)."""
    body: list[dict[str, Any]] = []
    for doc_id, doc in actions:
        # create (not index): data streams accept only create, and a duplicate is a 409.
        body.append({"create": {"_index": index, "_id": doc_id}})
        body.append(doc)
    try:
        response = client.bulk(body=body)
        state.opensearch_ok = True
    except (OSConnectionError, TransportError) as exc:
        state.opensearch_ok = False
        state.last_error = f"bulk failed: {exc}"
        log.warning("%s", state.last_error)
        return False
    retry = False
    for item in response["items"]:
        result = item["create"]
        status = result["status"]
        if status in INDEXED:
            state.indexed += 1
        elif status == ALREADY_THERE:
            state.duplicates += 1
        elif status in PERMANENT:
            state.dropped += 1
            state.last_error = f"dropped {result.get('_id')}: {result.get('error')}"
            log.error("%s", state.last_error)
        else:
            retry = True
            state.last_error = f"{status} for {result.get('_id')}: {result.get('error')}"
    if retry:
        log.warning("bulk partly failed, retrying the batch: %s", state.last_error)
    return not retry


def serve_health(port: int, state: State) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.as_json()
            self.send_response(200 if state.healthy() else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    bootstrap = os.environ["TRACECTL_KAFKA_BOOTSTRAP"]
    url = os.environ["TRACECTL_OPENSEARCH_URL"]
    topic = os.environ.get("TRACECTL_SHIPPER_TOPIC", "tracectl.logs")
    index = os.environ.get("TRACECTL_SHIPPER_INDEX", "logs-tracectl-default")
    group = os.environ.get("TRACECTL_SHIPPER_GROUP", "tracectl-shipper")
    port = int(os.environ.get("TRACECTL_SHIPPER_PORT", "9611"))

    state = State()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    client = OpenSearch(hosts=[url], timeout=30, verify_certs=False, ssl_show_warn=False)
    client.info()
    state.opensearch_ok = True
    install_template(client, os.environ.get("TRACECTL_SHIPPER_TEMPLATE", ""))
    ensure_topic(bootstrap, topic)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="tracectl-shipper",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
        # Static membership: a restarted shipper (even after kill -9) takes its partitions back
        # at once instead of waiting for the old member's session to expire.
        group_instance_id=os.environ.get("TRACECTL_SHIPPER_INSTANCE", "tracectl-shipper-1"),
        session_timeout_ms=10000,
    )
    server = serve_health(port, state)
    log.info("shipping %s -> %s/%s as group %s", topic, url, index, group)
    backoff = 0.5
    last_ping = time.time()
    while not stopping.is_set():
        batches = consumer.poll(timeout_ms=500)
        state.last_poll = time.time()
        state.assigned = sorted(f"{tp.topic}-{tp.partition}" for tp in consumer.assignment())
        records = [r for part in batches.values() for r in part]
        if not records:
            if time.time() - last_ping > 10:
                # Idle: keep the health endpoint truthful about OpenSearch all the same.
                state.opensearch_ok = bool(client.ping())
                last_ping = time.time()
            continue
        if bulk(client, index, [to_action(r) for r in records], state):
            try:
                consumer.commit()
                backoff = 0.5
                continue
            except KafkaError:
                # The broker went away mid-commit: the batch is indexed (ids make a re-read
                # harmless), so re-read from its first offsets once Kafka is back.
                log.warning("offset commit failed; will re-read the batch", exc_info=True)
        # Not all of the batch is in: re-read it from its first offsets after a pause.
        for tp, part in batches.items():
            consumer.seek(TopicPartition(tp.topic, tp.partition), part[0].offset)
        stopping.wait(backoff)
        backoff = min(backoff * 2, 10.0)
    consumer.close()
    server.shutdown()
    log.info(
        "stopped: %d indexed, %d duplicates, %d dropped",
        state.indexed,
        state.duplicates,
        state.dropped,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
