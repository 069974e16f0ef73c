"""Smoke test of the real OpenSearch node that deploy/local/opensearch runs (single node, 2.19).

Exercises what the log pipeline relies on: a composable index template with explicit mappings and
a data stream, bulk ``create`` into the stream, refresh, a term query on ``labels.task_id``, and
the mapping stored for the stream's backing index.

The node is shared with the shipper's test, whose template covers ``logs-tracectl-*``. This test's
template therefore matches only ``logs-tracectl-test*`` (a sub-pattern of the log namespace, at a
higher priority): a ``logs-tracectl-*`` template of its own would capture the shipper's streams
(``logs-tracectl-default``) while it exists, and could then not be deleted.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from opensearchpy import NotFoundError, OpenSearch

pytestmark = pytest.mark.opensearch

TEMPLATE = "logs-tracectl-smoke"
PATTERN = "logs-tracectl-test*"
STREAM = "logs-tracectl-test"


def _client(env: dict[str, str]) -> OpenSearch:
    return OpenSearch(hosts=[env["TRACECTL_OPENSEARCH_URL"]], timeout=30)


def _drop_stream(client: OpenSearch) -> None:
    with contextlib.suppress(NotFoundError):
        client.indices.delete_data_stream(name=STREAM)


def test_cluster_is_opensearch_and_healthy(opensearch: dict[str, str]) -> None:
    client = _client(opensearch)
    info = client.info()
    assert info["version"]["distribution"] == "opensearch"
    assert info["version"]["number"] == opensearch["TRACECTL_OPENSEARCH_VERSION"]
    assert client.cluster.health()["status"] in {"green", "yellow"}
    modules = {
        m["name"]
        for node in client.nodes.info(metric="plugins")["nodes"].values()
        for m in node["modules"]
    }
    assert {"transport-netty4", "mapper-extras", "lang-painless", "reindex"} <= modules


def test_template_data_stream_bulk_and_term_search(opensearch: dict[str, str]) -> None:
    client = _client(opensearch)
    _drop_stream(client)  # a previous run's leftovers
    client.indices.put_index_template(
        name=TEMPLATE,
        body={
            "index_patterns": [PATTERN],
            "data_stream": {},
            "priority": 300,  # above the shipper's (150) and the production (200) templates
            "template": {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {
                    "dynamic": False,
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "message": {"type": "text"},
                        "labels": {"properties": {"task_id": {"type": "keyword"}}},
                    },
                },
            },
        },
    )
    try:
        run = uuid.uuid4().hex[:8]
        task_a, task_b = f"train-{run}", f"eval-{run}"
        docs = [
            ("2026-11-25T10:00:00Z", task_a, "epoch 1 loss 0.91"),
            ("2026-11-25T10:00:01Z", task_a, "epoch 2 loss 0.42"),
            ("2026-11-25T10:00:02Z", task_b, "accuracy 0.97"),
        ]
        body: list[dict[str, object]] = []
        for ts, task, msg in docs:
            body.append({"create": {"_index": STREAM}})
            body.append({"@timestamp": ts, "message": msg, "labels": {"task_id": task}})
        resp = client.bulk(body=body)
        assert resp["errors"] is False, resp
        assert [item["create"]["result"] for item in resp["items"]] == ["created"] * 3

        # A data stream is append-only: a plain "index" op into it is refused by the server.
        refused = client.bulk(
            body=[{"index": {"_index": STREAM}}, {"@timestamp": docs[0][0], "message": "x"}]
        )
        assert refused["errors"] is True
        assert refused["items"][0]["index"]["status"] == 400

        client.indices.refresh(index=STREAM)

        hits = client.search(
            index=STREAM,
            body={"query": {"term": {"labels.task_id": task_a}}, "sort": [{"@timestamp": "asc"}]},
        )["hits"]
        assert hits["total"]["value"] == 2
        assert [h["_source"]["message"] for h in hits["hits"]] == [docs[0][2], docs[1][2]]
        backing = {h["_index"] for h in hits["hits"]}

        # keyword, not text: a term on part of the value finds nothing
        partial = client.search(index=STREAM, body={"query": {"term": {"labels.task_id": "train"}}})
        assert partial["hits"]["total"]["value"] == 0
        # message is analysed text: a match on one word finds the eval line
        words = client.search(index=STREAM, body={"query": {"match": {"message": "accuracy"}}})
        assert [h["_source"]["labels"]["task_id"] for h in words["hits"]["hits"]] == [task_b]

        stream = client.indices.get_data_stream(name=STREAM)["data_streams"][0]
        assert stream["timestamp_field"]["name"] == "@timestamp"
        indices = [i["index_name"] for i in stream["indices"]]
        assert len(indices) == 1 and indices[0].startswith(f".ds-{STREAM}-")
        assert backing == set(indices)

        props = client.indices.get_mapping(index=indices[0])[indices[0]]["mappings"]["properties"]
        assert props["labels"]["properties"]["task_id"]["type"] == "keyword"
        assert props["@timestamp"]["type"] == "date"
        assert props["message"]["type"] == "text"
    finally:
        _drop_stream(client)
        client.indices.delete_index_template(name=TEMPLATE)


def test_ingest_pipeline_grok_and_painless_modules(opensearch: dict[str, str]) -> None:
    """The ingest-common (grok) and lang-painless modules built from Maven jars really load."""
    client = _client(opensearch)
    pipeline = f"tracectl-smoke-{uuid.uuid4().hex[:8]}"
    index = f"tracectl-smoke-{uuid.uuid4().hex[:8]}"
    grok = {"field": "message", "patterns": ["%{LOGLEVEL:level} %{GREEDYDATA:rest}"]}
    client.ingest.put_pipeline(
        id=pipeline,
        body={
            "processors": [
                {"grok": grok},
                {"script": {"lang": "painless", "source": "ctx.rest_len = ctx.rest.length()"}},
            ]
        },
    )
    try:
        client.index(
            index=index,
            id="1",
            body={"message": "ERROR disk full"},
            params={"pipeline": pipeline, "refresh": "true"},
        )
        source = client.get(index=index, id="1")["_source"]
        assert source["level"] == "ERROR"
        assert source["rest"] == "disk full"
        assert source["rest_len"] == len("disk full")
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
        client.ingest.delete_pipeline(id=pipeline)
