"""Log reconciliation against the real stack: Kafka, the shipper, OpenSearch and S3.

A clean task reconciles "ok" on all four copies (file record, Kafka, index, archive); a
deleted index document and a truncated archive object are each detected and repaired; the
passport's Kafka offset ranges, read back from the broker, hold exactly the task's lines.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from controller.api.app import create_app
from controller.archive.s3 import S3ArtifactStore
from controller.config import Settings
from controller.core.service import ControllerService
from controller.logs.file_sink import FileLogReader
from controller.logs.reconcile import LogReconciler
from controller.logs.reconcile_records import enqueue_check
from controller.logs.reconcile_worker import ReconcileWorker
from controller.ports import SearchIndex
from controller.store.database import Database
from tests.core.conftest import Api, python
from tests.logs.conftest import INDEX, indexed, wait_indexed
from tests.waiting import gather, wait_for

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(600),
]

N_LINES = 120
TASK = f"""
import sys
for i in range({N_LINES}):
    print(f"reconcile line {{i}}", flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
"""
COPIES = ["record", "kafka", "index", "archive"]


def run_task(api: Api, name: str) -> dict[str, Any]:
    """Run the task; its dict gains ``lines``: the count in its file record (the task's
    lines plus the runner's system lines)."""
    run_id = api.run(pipeline="logs-reconcile", airflow_dag_id="dag_reconcile")
    task = api.submit(run_id, name, command=python(TASK))
    done = api.wait(task["id"])
    assert done["status"] == "succeeded", done
    logs = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["logs"]
    assert logs["lines"] >= N_LINES + 1
    return {**done, "lines": logs["lines"]}


def wait_checked(api: Api, task_id: str, timeout: float = 240) -> dict[str, Any]:
    """The background check's result, once it is no longer pending."""

    def checked() -> dict[str, Any] | None:
        body = api.client.get(f"/v1/tasks/{task_id}/logs/reconciliation").json()
        summary = body["summary"]
        return dict(body) if summary is not None and summary["status"] != "pending" else None

    return wait_for(f"the log check of {task_id}", checked, timeout, 0.5)


def by_copy(copies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert [c["copy"] for c in copies] == COPIES
    return {c["copy"]: c for c in copies}


def reconcile(api: Api, task_id: str, repair: bool = False) -> dict[str, dict[str, Any]]:
    response = api.client.post(
        f"/v1/tasks/{task_id}/logs/reconcile", params={"repair": str(repair).lower()}
    )
    assert response.status_code == 200, response.text
    return by_copy(response.json()["copies"])


def metric(api: Api, name: str) -> float:
    text = api.client.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


def record_lines(api: Api, task: dict[str, Any]) -> list[tuple[int, str]]:
    lines = FileLogReader(api.settings).read(task["run_id"], task["id"], 1, 0, 100000)
    return [(line.seq, line.message) for line in lines]


def test_clean_task_reconciles_ok_on_every_copy(pipeline_api: Api) -> None:
    task = run_task(pipeline_api, "clean")
    result = wait_checked(pipeline_api, task["id"])
    copies = by_copy(result["copies"])
    lineage = pipeline_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["logs"]
    total = task["lines"]
    for name in COPIES:
        assert copies[name]["status"] == "ok", copies[name]
        assert copies[name]["lines"] == total
        assert copies[name]["checksum"] == lineage["sha256"]
        assert copies[name]["checked_at"] is not None and copies[name]["repaired_at"] is None
    assert copies["archive"]["detail"]["object_sha256"] == lineage["archive"]["sha256"]
    assert copies["index"]["detail"]["documents"] == total
    shown = pipeline_api.client.get(f"/v1/tasks/{task['id']}").json()["log_reconciliation"]
    assert shown["status"] == "ok" and shown["attempt"] == 1
    assert shown["copies"] == {name: "ok" for name in COPIES}
    metrics = pipeline_api.client.get("/metrics").text
    assert 'tracectl_tasks{status="succeeded"}' in metrics
    assert metric(pipeline_api, 'tracectl_log_reconciliation_copies{copy="index",status="ok"}') >= 1


@pytest.mark.parametrize("engine", ["opensearch"])  # no index in play: one engine is enough
def test_pending_checks_are_found_in_the_store_after_a_restart(pipeline_api: Api) -> None:
    task = run_task(pipeline_api, "restarted")
    wait_checked(pipeline_api, task["id"])
    settings = pipeline_api.settings
    db = Database(settings.store_url)
    lineage = pipeline_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["logs"]
    # As if the controller had died right after ending the attempt: the check is queued.
    with db.write() as session:
        enqueue_check(session, task["run_id"], task["id"], 1, lineage)
    assert (
        pipeline_api.client.get(f"/v1/tasks/{task['id']}").json()["log_reconciliation"]["status"]
        == "pending"
    )
    # A new controller's worker (not the running one's) finds and checks it.
    worker = ReconcileWorker(LogReconciler(settings, db, S3ArtifactStore(settings)))
    assert worker.run_pending() >= 1
    copies = by_copy(
        pipeline_api.client.get(f"/v1/tasks/{task['id']}/logs/reconciliation").json()["copies"]
    )
    assert {c["status"] for c in copies.values()} == {"ok"}
    db.dispose()


@pytest.mark.parametrize("engine", ["opensearch"])  # no index in play: one engine is enough
def test_passport_offset_ranges_hold_exactly_the_task_lines(pipeline_api: Api) -> None:
    task = run_task(pipeline_api, "passport")
    wait_checked(pipeline_api, task["id"])
    passport = pipeline_api.client.get(f"/v1/runs/{task['run_id']}/passport").json()
    entry = next(t for t in passport["tasks"] if t["task_id"] == task["id"])
    logs = entry["logs"]
    assert logs["index"] == {"data_streams": ["logs-tracectl-default"], "documents": task["lines"]}
    assert {c["status"] for c in logs["reconciliation"]["copies"].values()} == {"ok"}
    ranges = logs["kafka"]["log_ranges"]
    assert ranges and all(r["topic"] == "tracectl.logs" for r in ranges)
    assert sum(r["records"] for r in ranges) == task["lines"]

    bootstrap = pipeline_api.settings.log_sink.split("://", 1)[1]
    in_ranges = read_ranges(bootstrap, ranges)
    mine = [json.loads(r.value) for r in in_ranges if r.key == task["id"].encode()]
    assert [(e["event"]["sequence"], e["message"]) for e in mine] == record_lines(
        pipeline_api, task
    )
    assert all(e["event"]["id"] == f"{task['id']}:1:{e['event']['sequence']}" for e in mine)
    # The ranges are tight: they start and end on the task's own first and last line.
    assert {r.offset for r in in_ranges if r.key == task["id"].encode()} >= {
        x for r in ranges for x in (r["first_offset"], r["last_offset"])
    }

    status_ranges = logs["kafka"]["status_event_ranges"]
    assert status_ranges and status_ranges[0]["topic"] == "tracectl.status"
    events = [
        json.loads(r.value)
        for r in read_ranges(bootstrap, status_ranges)
        if r.key == task["id"].encode()
    ]
    assert [e["event"]["action"] for e in events][:3] == ["submitted", "admitted", "started"]


def read_to(consumer: KafkaConsumer, tp: TopicPartition, last: int) -> list[Any]:
    """TP's records from where CONSUMER stands up to offset LAST (what came within 60 s)."""

    def records() -> list[Any]:
        return [x for b in consumer.poll(timeout_ms=500).values() for x in b if x.offset <= last]

    return gather(records, lambda _: consumer.position(tp) > last, 60)


def read_ranges(bootstrap: str, ranges: list[dict[str, Any]]) -> list[Any]:
    """Every record at the offsets of RANGES (first..last inclusive), read from the broker."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    out: list[Any] = []
    try:
        for r in ranges:
            tp = TopicPartition(r["topic"], r["partition"])
            consumer.assign([tp])
            consumer.seek(tp, r["first_offset"])
            out += read_to(consumer, tp, r["last_offset"])
            assert consumer.position(tp) > r["last_offset"], f"could not read {r}"
    finally:
        consumer.close()
    return out


def test_deleted_index_documents_are_detected_and_repaired(
    pipeline_api: Api, search: SearchIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = run_task(pipeline_api, "deleted")
    wait_checked(pipeline_api, task["id"])
    gone = [f"{task['id']}:1:{seq}" for seq in (1, 50, task["lines"])]
    search.delete_ids(INDEX, gone)
    left = {d["_id"] for d in indexed(search, task["id"])}
    assert len(left) == task["lines"] - 3 and not left & set(gone)
    mismatches_before = metric(pipeline_api, "tracectl_log_reconciliation_mismatches_total")

    # they will not come back alone
    monkeypatch.setattr(pipeline_api.settings, "log_reconcile_wait_s", 2.0)
    copies = reconcile(pipeline_api, task["id"])
    index = copies["index"]
    assert index["status"] == "missing" and index["missing"] == 3
    assert index["summary"] == "missing 3 lines"
    assert index["detail"]["missing_seqs"] == [1, 50, task["lines"]]
    assert index["lines"] == task["lines"] - 3
    assert [copies[n]["status"] for n in ("record", "kafka", "archive")] == ["ok"] * 3
    shown = pipeline_api.client.get(f"/v1/tasks/{task['id']}").json()["log_reconciliation"]
    assert shown["status"] == "mismatch" and shown["copies"]["index"] == "missing 3 lines"
    assert (
        metric(pipeline_api, "tracectl_log_reconciliation_mismatches_total")
        == mismatches_before + 1
    )
    entry = next(
        t
        for t in pipeline_api.client.get(f"/v1/runs/{task['run_id']}/passport").json()["tasks"]
        if t["task_id"] == task["id"]
    )
    assert entry["logs"]["reconciliation"]["copies"]["index"]["status"] == "missing"

    # The shipper may be rejoining its consumer group (another test restarted Kafka): wait.
    monkeypatch.setattr(pipeline_api.settings, "log_reconcile_wait_s", 300.0)
    copies = reconcile(pipeline_api, task["id"], repair=True)
    assert {c["status"] for c in copies.values()} == {"ok"}, copies
    assert copies["index"]["repaired_at"] is not None
    assert copies["index"]["detail"]["reshipped"] == 3
    assert copies["index"]["detail"]["via"] == "kafka"
    assert copies["index"]["detail"]["source"] == "archive"
    # The re-sent records are in the Kafka copy now: each of those lines twice, deduped.
    assert copies["kafka"]["detail"]["duplicates"] == 3
    assert copies["kafka"]["lines"] == task["lines"]
    docs = wait_indexed(search, task["id"], task["lines"])
    assert [d["event"]["sequence"] for d in docs] == list(range(1, task["lines"] + 1))
    assert [(d["event"]["sequence"], d["message"]) for d in docs] == record_lines(
        pipeline_api, task
    )
    restored = {d["_id"]: d for d in docs if d["_id"] in gone}
    assert set(restored) == set(gone)
    assert restored[gone[0]]["labels"]["dag_id"] == "dag_reconcile"


@pytest.mark.parametrize("engine", ["opensearch"])  # no index in play: one engine is enough
def test_truncated_archive_is_detected_and_rewritten(pipeline_api: Api) -> None:
    task = run_task(pipeline_api, "truncated")
    wait_checked(pipeline_api, task["id"])
    archive = pipeline_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["logs"]["archive"]
    store = S3ArtifactStore(pipeline_api.settings)
    packed = store.open_bytes(archive["uri"])
    assert hashlib.sha256(packed).hexdigest() == archive["sha256"]
    cut = packed[: len(packed) // 2]
    name = archive["uri"].split("/", 3)[3]
    store.client.put_object(store.bucket, name, io.BytesIO(cut), len(cut))

    copies = reconcile(pipeline_api, task["id"])
    damaged = copies["archive"]
    assert damaged["status"] == "corrupt", damaged
    assert damaged["detail"]["object_sha256"] == hashlib.sha256(cut).hexdigest()
    assert "is not the recorded" in damaged["detail"]["damage"]
    assert "gzip" in damaged["detail"]["damage"]
    assert damaged["lines"] < task["lines"]
    assert copies["record"]["status"] == "ok"

    copies = reconcile(pipeline_api, task["id"], repair=True)
    fixed = copies["archive"]
    assert fixed["status"] == "ok" and fixed["repaired_at"] is not None
    assert fixed["detail"]["previous_sha256"] == hashlib.sha256(cut).hexdigest()
    rewritten = store.open_bytes(archive["uri"])
    assert hashlib.sha256(rewritten).hexdigest() == fixed["detail"]["sha256"]
    assert fixed["lines"] == task["lines"]
    # A later check compares with the rewritten object's hash, and keeps the old one.
    again = by_copy(
        pipeline_api.client.get(f"/v1/tasks/{task['id']}/logs/reconciliation").json()["copies"]
    )["archive"]
    assert again["detail"]["previous_sha256"] == hashlib.sha256(cut).hexdigest()


def test_without_kafka_missing_lines_are_written_straight_to_the_index(
    pipeline_settings: Settings, search: SearchIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # File sink only: nothing ships the lines, so the index lacks all of them.
    settings = pipeline_settings.model_copy(update={"log_sink": "file", "status_events": "none"})
    with TestClient(create_app(settings, service=ControllerService(settings))) as client:
        api = Api(client, settings)
        task = run_task(api, "no-kafka")
        monkeypatch.setattr(settings, "log_reconcile_wait_s", 1.0)
        copies = reconcile(api, task["id"])
        assert copies["kafka"]["status"] == "n/a"
        assert copies["index"]["status"] == "missing"
        assert copies["index"]["missing"] == task["lines"]
        copies = reconcile(api, task["id"], repair=True)
        assert copies["index"]["status"] == "ok", copies["index"]
        assert copies["index"]["detail"]["via"] == "index"
        docs = wait_indexed(search, task["id"], task["lines"])
        assert [(d["event"]["sequence"], d["message"]) for d in docs] == record_lines(api, task)
