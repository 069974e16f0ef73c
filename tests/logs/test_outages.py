"""Nothing is lost when Kafka or the index goes away and comes back.

These tests stop and restart the real services with deploy/local/<svc> stop|start.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from controller.config import Settings
from controller.logs.kafka_sink import KafkaLogSink
from controller.ports import LogLine, SearchIndex
from tests.core.conftest import Api, python
from tests.logs.conftest import ensure_up, read_topic, service, wait_indexed

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(900),
]

SLOW_TASK = """
import pathlib, sys, time
stop = pathlib.Path(sys.argv[1])
i = 0
while not stop.exists() and i < 20000:
    i += 1
    print(f"tick {i}", flush=True)
    time.sleep(0.02)
print("done", flush=True)
"""


def _stamp(doc: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(doc["@timestamp"]).replace("Z", "+00:00"))


# A Kafka outage is the same for every engine behind the shipper: one engine is enough.
@pytest.mark.parametrize("engine", ["opensearch"])
def test_kafka_down_mid_task_loses_no_line(
    pipeline_api: Api, search: SearchIndex, tmp_path: Path
) -> None:
    stop_file = tmp_path / "stop"
    run_id = pipeline_api.run(pipeline="logs-kafka-outage")
    task = pipeline_api.submit(run_id, "ticker", command=[*python(SLOW_TASK), str(stop_file)])
    try:
        assert wait_indexed(search, task["id"], 20, timeout=120), "no line arrived before"
        down_at = datetime.now(UTC)
        service("kafka", "stop")
        time.sleep(3)  # lines keep coming: they can only go to the spool
        up_at = datetime.now(UTC)
        service("kafka", "start")
    finally:
        service("kafka", "start")  # idempotent: never leave the broker down
        # rsyslog rides out the broker's absence (librdkafka reconnects); should it have exited,
        # this restarts it and it resumes from its committed offsets and its disk queues.
        ensure_up("shipper")
        time.sleep(2)
        stop_file.touch()
    done = pipeline_api.wait(task["id"], timeout=180)
    assert done["status"] == "succeeded", done
    total = pipeline_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["logs"]["lines"]

    docs = wait_indexed(search, task["id"], total, timeout=240)
    assert [d["event"]["sequence"] for d in docs] == list(range(1, total + 1))
    during = [d for d in docs if down_at <= _stamp(d) <= up_at]
    assert len(during) > 20, "the outage window should hold spooled lines"
    assert docs[-1]["message"] == "done"


def test_index_down_then_shipper_catches_up(
    pipeline_api: Api, search: SearchIndex, engine: str
) -> None:
    service(engine, "stop")
    try:
        run_id = pipeline_api.run(pipeline="logs-index-outage")
        task = pipeline_api.submit(
            run_id, "chatty", command=python("for i in range(300): print('row', i)")
        )
        done = pipeline_api.wait(task["id"])
        assert done["status"] == "succeeded", done  # the task does not wait for the index
    finally:
        service(engine, "start", timeout=600)
    total = pipeline_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()["logs"]["lines"]
    docs = wait_indexed(search, task["id"], total, timeout=300)
    assert [d["event"]["sequence"] for d in docs] == list(range(1, total + 1))


def _line(task_id: str, seq: int) -> LogLine:
    return LogLine("spool-run", task_id, 1, seq, "stdout", f"spooled {seq}", datetime.now(UTC))


def test_spool_keeps_order_across_a_broker_outage(stack: dict[str, str], tmp_path: Path) -> None:
    """Lines written while the broker is down reach Kafka before any line written after."""
    bootstrap = stack["TRACECTL_KAFKA_BOOTSTRAP"]
    topic = f"tracectl.test.spool.{uuid.uuid4().hex[:8]}"
    task_id = f"spool-{uuid.uuid4().hex[:8]}"
    settings = Settings(home=tmp_path / "home", log_sink=f"kafka://{bootstrap}/{topic}")
    labels = {"run_id": "spool-run", "task_id": task_id, "attempt": "1"}
    sink = KafkaLogSink(settings, labels)
    n_before, n_down, n_after = 200, 500, 300
    try:
        for seq in range(1, n_before + 1):
            sink.emit(_line(task_id, seq))
        sink.flush()
        assert sink.stats()["sent"] == n_before
        service("kafka", "stop")
        for seq in range(n_before + 1, n_before + n_down + 1):
            sink.emit(_line(task_id, seq))
        time.sleep(2)
        stats = sink.stats()
        assert stats["sent"] == n_before and stats["spooled_bytes"] > 0
        spool = settings.home / "spool" / "logs" / "spool-run" / task_id / "1"
        assert any(spool.glob("*.seg"))
        service("kafka", "start")
        # Written after the broker is back, while the spool may still be draining.
        for seq in range(n_before + n_down + 1, n_before + n_down + n_after + 1):
            sink.emit(_line(task_id, seq))
    finally:
        service("kafka", "start")
        ensure_up("shipper")
        sink.close()
    total = n_before + n_down + n_after
    assert sink.stats()["sent"] >= total and sink.stats()["dropped"] == 0
    assert not spool.exists(), "a drained spool is removed"
    values = read_topic(bootstrap, topic, task_id, until=total)
    seqs = [v["event"]["sequence"] for v in values]
    # A chunk cut off by the outage may be sent again (the index drops it by event.id), but
    # never out of order: the first occurrences are 1..N in order.
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, total + 1))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 3
        admin.delete_topics([topic])
    finally:
        admin.close()
