"""rsyslog (logstash/rsyslog/tracectl.conf) indexes the documents the Logstash pipeline would.

Logstash itself cannot run here (it is in no registry this machine reaches), so this test
reads logstash/pipeline/tracectl.conf, applies the filters it declares with a small Python
reference (json codec, date on @timestamp, event.id fallback, remove_field, document_id,
action create) to the very records rsyslog consumed from Kafka, and compares the reference
documents, field by field and by _id, with what rsyslog put in OpenSearch and in Elasticsearch.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from controller import backends
from controller.config import Settings
from controller.logs.kafka_sink import KafkaLogSink
from controller.ports import LogLine, SearchIndex
from tests.logs.conftest import engine_url
from tests.waiting import gather, poll_until

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.elasticsearch,
    pytest.mark.shipper,
]

CONF = Path(__file__).resolve().parents[2] / "logstash" / "pipeline" / "tracectl.conf"
TOPIC = "tracectl.logs"


# -- the reference: what tracectl.conf does to one Kafka record ------------------------------
def setting(text: str, name: str) -> str:
    match = re.search(rf'\b{name}\s*=>\s*"([^"]*)"', text)
    assert match, f"{name} not found in {CONF.name}"
    return match.group(1)


def pipeline() -> dict[str, Any]:
    text = re.sub(r"(?m)^\s*#.*$", "", CONF.read_text())
    logs_output = text[text.index("} else {") :]
    fallback = re.search(
        r'if !\[event\]\[id\]\s*{.*?"\[event\]\[id\]"\s*=>\s*"([^"]+)"', text, re.S
    )
    removed = re.search(r"remove_field\s*=>\s*\[([^\]]*)\]", text)
    date = re.search(r'date\s*{\s*match\s*=>\s*\["([^"]+)",\s*"([^"]+)"\]', text)
    topics = re.search(r"topics\s*=>\s*\[([^\]]*)\]", text)
    codec = re.search(r'codec\s*=>\s*"?(\w+)', text)
    assert fallback and removed and date and topics and codec, "tracectl.conf lost a filter"
    return {
        "codec": codec.group(1),
        "topics": re.findall(r'"([^"]+)"', topics.group(1)),
        "date_field": date.group(1),
        "date_format": date.group(2),
        "id_fallback": fallback.group(1),
        "remove": re.findall(r'"([^"]+)"', removed.group(1)),
        "document_id": setting(logs_output, "document_id"),
        "action": setting(logs_output, "action"),
        "dataset": setting(logs_output, "data_stream_dataset"),
        "type": setting(logs_output, "data_stream_type"),
        "namespace": setting(logs_output, "data_stream_namespace"),
    }


def path_of(ref: str) -> list[str]:
    return re.findall(r"\[([^\]]+)\]", ref) or [ref]


def get(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in path_of(ref):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def delete(doc: dict[str, Any], ref: str) -> None:
    *parents, leaf = path_of(ref)
    node: Any = doc
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def put(doc: dict[str, Any], ref: str, value: Any) -> None:
    *parents, leaf = path_of(ref)
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def sprintf(template: str, doc: dict[str, Any], metadata: dict[str, Any]) -> str:
    def field(match: re.Match[str]) -> str:
        ref = match.group(1)
        source = metadata if ref.startswith("[@metadata]") else doc
        return str(get(source, ref.replace("[@metadata]", "", 1)))

    return re.sub(r"%\{([^}]+)\}", field, template)


def logstash(
    conf: dict[str, Any], topic: str, partition: int, offset: int, value: bytes
) -> tuple[str, str, dict[str, Any]]:
    """(index, _id, document) that tracectl.conf makes of one record."""
    assert conf["codec"] == "json" and topic in conf["topics"]
    metadata = {"kafka": {"topic": topic, "partition": partition, "offset": offset}}
    try:
        doc = json.loads(value)
        assert isinstance(doc, dict)
    except (ValueError, AssertionError):
        doc = {
            "message": value.decode(errors="replace"),
            "tags": ["_jsonparsefailure"],
            "@timestamp": datetime.now(UTC).isoformat(),
        }  # the codec stamps ingest time
    assert conf["date_field"] == "[@timestamp]" and conf["date_format"] == "ISO8601"
    doc["@timestamp"] = instant(doc["@timestamp"])
    if get(doc, "[event][id]") is None:
        put(doc, "[event][id]", sprintf(conf["id_fallback"], doc, metadata))
    for ref in conf["remove"]:
        delete(doc, ref)
    assert conf["action"] == "create"
    index = f"{conf['type']}-{conf['dataset']}-{conf['namespace']}"
    return index, sprintf(conf["document_id"], doc, metadata), doc


def instant(value: str) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


# -- the comparison ------------------------------------------------------------------------
def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """Where each partition of the topic ends now: the test reads only what it produces after,
    not the whole topic (tens of thousands of records by then in a full run)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC) or ()]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


def records_of(
    bootstrap: str, start: dict[TopicPartition, int], key: bytes, count: int
) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC) or ()]
        consumer.assign(parts)
        for part in parts:  # a topic this test's own records created starts at 0
            consumer.seek(part, start.get(part, 0))

        def records() -> list[Any]:
            return [r for b in consumer.poll(timeout_ms=500).values() for r in b if r.key == key]

        return gather(records, lambda found: len(found) >= count, 60)
    finally:
        consumer.close()


def indexed_by_id(client: SearchIndex, ids: list[str]) -> dict[str, dict[str, Any]]:
    body = {"query": {"ids": {"values": ids}}, "size": len(ids)}

    def docs() -> dict[str, dict[str, Any]]:
        # on a fresh stack the shipper creates the stream with its first document
        client.refresh("logs-tracectl-default")
        hits = client.search("logs-tracectl-default", body)["hits"]["hits"]
        return {hit["_id"]: hit for hit in hits}

    return poll_until(docs, lambda found: len(found) == len(ids), 90, 0.5)


def normal(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["@timestamp"] = (
        instant(out["@timestamp"]) if isinstance(out["@timestamp"], str) else out["@timestamp"]
    )
    return out


def produce_task_lines(bootstrap: str, task_id: str, tmp_path: Path) -> list[str]:
    """Lines of one task through the controller's own Kafka sink; returns their messages."""
    settings = Settings(home=tmp_path, log_sink=f"kafka://{bootstrap}")
    sink = KafkaLogSink(
        settings,
        {
            "run_id": "parity-run",
            "task_id": task_id,
            "attempt": "2",
            "dag_id": "dag_parity",
            "task_name": "parity",
        },
    )
    messages = [
        "plain line",
        "ERROR: with a level",
        'tab\tand "quotes" and ünïcödé',
        r"escaped \xff byte",
        '  File "x.py", line 1, in <module>',
    ]
    for seq, text in enumerate(messages, start=1):
        sink.emit(
            LogLine(
                "parity-run",
                task_id,
                2,
                seq,
                "stderr" if seq == 2 else "stdout",
                text,
                datetime.now(UTC),
            )
        )
    sink.close()
    return messages


def produce_foreign(bootstrap: str, task_id: str) -> None:
    """A foreign producer: no event.id, and a record that is not JSON at all."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    foreign = {
        "@timestamp": "2026-01-02T03:04:05.678Z",
        "message": "from elsewhere",
        "labels": {"task_id": task_id},
    }
    producer.send(TOPIC, key=task_id.encode(), value=json.dumps(foreign).encode())
    producer.send(TOPIC, key=task_id.encode(), value=f"not json {{ {task_id}".encode())
    producer.flush(timeout=30)
    producer.close()


@pytest.mark.parametrize(
    "engine",
    [
        "opensearch",
        "elasticsearch",
        pytest.param("elasticsearch9", marks=pytest.mark.elasticsearch9),
    ],
)
def test_rsyslog_documents_match_the_logstash_pipeline(
    kafka: dict[str, str],
    opensearch: dict[str, str],
    elasticsearch: dict[str, str],
    shipper: dict[str, str],
    engine: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    conf = pipeline()
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    task_id = f"parity-{uuid.uuid4().hex[:10]}"
    start = end_offsets(bootstrap)
    messages = produce_task_lines(bootstrap, task_id, tmp_path)
    produce_foreign(bootstrap, task_id)

    records = records_of(bootstrap, start, task_id.encode(), len(messages) + 2)
    assert len(records) == len(messages) + 2
    expected = [logstash(conf, r.topic, r.partition, r.offset, r.value) for r in records]
    assert {index for index, _, _ in expected} == {shipper["TRACECTL_SHIPPER_INDEX"]}
    es9 = request.getfixturevalue("shipper9") if engine == "elasticsearch9" else {}
    client = backends.search_index(engine_url({**opensearch, **elasticsearch, **es9}, engine))
    ours = expected[: len(messages)]
    got = indexed_by_id(client, [doc_id for _, doc_id, _ in ours])
    assert set(got) == {doc_id for _, doc_id, _ in ours}
    for _, doc_id, reference in ours:  # tracectl's own events: identical documents and ids
        assert got[doc_id]["_index"].startswith(".ds-logs-tracectl-default-")
        assert normal(got[doc_id]["_source"]) == reference, doc_id
    assert [got[i]["_source"]["message"] for _, i, _ in ours] == messages

    # Foreign records: the same documents but for the fallback id, which rsyslog cannot build
    # from partition and offset (imkafka does not expose them): "<topic>-<hash64 of the
    # record>", written to event.id as Logstash writes its own, and as stable across re-reads.
    (_, _, foreign_ref), (_, _, raw_ref) = expected[len(messages) :]
    client.refresh("logs-tracectl-default")
    body = {
        "query": {
            "bool": {
                "filter": [{"term": {"labels.task_id": task_id}}],
                "must_not": [{"exists": {"field": "event.sequence"}}],
            }
        }
    }
    foreign_hits = client.search("logs-tracectl-default", body)["hits"]["hits"]
    assert len(foreign_hits) == 1, foreign_hits
    foreign_got = normal(foreign_hits[0]["_source"])
    assert re.fullmatch(rf"{re.escape(TOPIC)}--?\d+", foreign_hits[0]["_id"])
    assert foreign_got["event"] == {"id": foreign_hits[0]["_id"]}
    strip = {k: v for k, v in foreign_ref.items() if k != "event"}
    assert {k: v for k, v in foreign_got.items() if k != "event"} == strip
    raw_text = f"not json {{ {task_id}"
    raw_body = {
        "query": {
            "bool": {
                "filter": [
                    {"term": {"tags": "_jsonparsefailure"}},
                    {"term": {"message.keyword": raw_text}},
                ]
            }
        }
    }
    raw_hits = client.search("logs-tracectl-default", raw_body)["hits"]["hits"]
    assert len(raw_hits) == 1, "the record that is not JSON was not indexed once"
    raw_got = raw_hits[0]["_source"]
    assert set(raw_got) == set(raw_ref) == {"message", "tags", "@timestamp", "event"}
    assert raw_got["message"] == raw_ref["message"] == raw_text
    assert raw_got["tags"] == raw_ref["tags"] == ["_jsonparsefailure"]
    assert raw_got["event"]["id"] == raw_hits[0]["_id"]
