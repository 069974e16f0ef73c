"""A task run through the controller: its log in the index once each, in order, and archived
in S3 exactly as the lineage record says; its status events on Kafka in order.

Real Kafka, real shipper, real OpenSearch, Elasticsearch 8 and 9, real S3 (deploy/local/*).
"""

from __future__ import annotations

import gzip
import hashlib

import pytest

from controller.archive.s3 import S3ArtifactStore
from controller.logs.search_reader import SearchLogReader
from controller.ports import SearchIndex
from tests.core.conftest import Api, python
from tests.logs.conftest import read_topic, wait_indexed

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(600),
]

N_PLAIN = 400
NOISY_TASK = f"""
import sys, traceback
for i in range({N_PLAIN}):
    print(f"line {{i}} of the task", flush=True)
    if i % 100 == 50:
        print(f"WARNING something odd at {{i}}", file=sys.stderr, flush=True)
try:
    raise ValueError("boom")
except ValueError:
    traceback.print_exc()
sys.stderr.flush()
sys.stdout.buffer.write(b"latin-1 caf\\xe9 and a lone \\xff byte\\n")
sys.stdout.flush()
print("ERROR: last words", flush=True)
"""


@pytest.mark.parametrize(
    "engine",
    [
        "opensearch",
        "elasticsearch",
        pytest.param("elasticsearch9", marks=pytest.mark.elasticsearch9),
    ],
)
def test_task_log_is_indexed_once_in_order_and_archived(
    pipeline_api: Api, search: SearchIndex
) -> None:
    run_id = pipeline_api.run(pipeline="logs-e2e", airflow_dag_id="dag_logs")
    task = pipeline_api.submit(run_id, "noisy", command=python(NOISY_TASK))
    done = pipeline_api.wait(task["id"])
    assert done["status"] == "succeeded", done

    lineage = pipeline_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    logs = lineage["logs"]
    total = logs["lines"]
    assert total >= N_PLAIN + 4 + 5  # warnings, traceback lines, bad bytes, last words

    docs = wait_indexed(search, task["id"], total)
    assert [d["event"]["sequence"] for d in docs] == list(range(1, total + 1))
    assert len({d["_id"] for d in docs}) == total
    assert all(d["_id"] == f"{task['id']}:1:{d['event']['sequence']}" for d in docs)
    messages = [d["message"] for d in docs]
    assert "Traceback (most recent call last):" in messages
    assert "ValueError: boom" in messages
    assert r"latin-1 caf\xe9 and a lone \xff byte" in messages
    by_message = {d["message"]: d for d in docs}
    assert by_message["ValueError: boom"]["log"]["level"] == "error"  # stderr, no level word
    assert by_message["line 7 of the task"]["log"]["level"] == "info"
    assert by_message["ERROR: last words"]["log"]["level"] == "error"
    assert by_message["WARNING something odd at 50"]["log"]["level"] == "warn"
    first = docs[0]
    assert first["labels"]["run_id"] == run_id
    assert first["labels"]["dag_id"] == "dag_logs"
    assert first["labels"]["attempt"] == "1"
    assert first["event"]["dataset"] == "tracectl.task"
    assert first["service"]["name"] == "tracectl"

    # The index holds the same log as the file record the lineage was computed from.
    reader = SearchLogReader(pipeline_api.settings)
    summary = reader.summary(run_id, task["id"], 1)
    assert (summary["lines"], summary["sha256"]) == (total, logs["sha256"])
    page = pipeline_api.logs(task["id"], after_seq=total - 3)
    assert [line["seq"] for line in page] == [total - 2, total - 1, total]

    # The archive in S3: its bytes hash to the recorded sha256 and hold every line.
    archive = logs["archive"]
    assert archive["uri"].startswith("s3://tracectl-logs-test/")
    store = S3ArtifactStore(pipeline_api.settings)
    packed = store.open_bytes(archive["uri"])
    assert hashlib.sha256(packed).hexdigest() == archive["sha256"]
    assert store.sha256_of(archive["uri"]) == archive["sha256"]
    lines = gzip.decompress(packed).decode().splitlines()
    assert len(lines) == archive["lines"] == total
    content = hashlib.sha256(b"".join(m.encode() + b"\n" for m in messages)).hexdigest()
    assert archive["content_sha256"] == content == logs["sha256"]

    # Search across tasks: the reader, and the API route over it.
    hits = reader.search(task_id=task["id"], text="boom")
    assert {h["message"] for h in hits} >= {"ValueError: boom"}
    errors = reader.search(run_id=run_id, level="error", limit=1000)
    assert {h["message"] for h in errors} >= {"ERROR: last words", "ValueError: boom"}
    assert all(h["level"] == "error" for h in errors)
    response = pipeline_api.client.get(
        "/v1/logs/search",
        params={"run_id": run_id, "dag_id": "dag_logs", "level": "warn", "limit": 50},
    )
    assert response.status_code == 200, response.text
    found = response.json()["items"]
    assert sorted(h["message"] for h in found) == sorted(
        f"WARNING something odd at {i}" for i in range(50, N_PLAIN, 100)
    )
    assert pipeline_api.client.get("/v1/logs/search", params={"level": "loud"}).status_code == 422


@pytest.mark.parametrize("engine", ["opensearch"])  # Kafka only: one engine is enough
def test_status_events_are_published_in_order(pipeline_api: Api) -> None:
    run_id = pipeline_api.run(pipeline="logs-status")
    task = pipeline_api.submit(run_id, "quick", command=python("print('hi')"))
    assert pipeline_api.wait(task["id"])["status"] == "succeeded"
    bootstrap = pipeline_api.settings.status_events.split("://", 1)[1]
    events = read_topic(bootstrap, "tracectl.status", task["id"], until=4)
    actions = [e["event"]["action"] for e in events]
    assert actions == ["submitted", "admitted", "started", "succeeded"]
    # Ids are stable per (task, attempt, status): "submitted" precedes attempt 1.
    assert [e["event"]["id"] for e in events] == [
        f"{task['id']}:{0 if a == 'submitted' else 1}:{a}" for a in actions
    ]
    assert all(e["labels"]["run_id"] == run_id for e in events)
