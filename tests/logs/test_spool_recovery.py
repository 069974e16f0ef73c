"""A spool left behind by a runner (Kafka unreachable until it gave up) is drained later, in
order, by the controller; a spool whose writer is alive is left alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from controller.config import Settings
from controller.logs.kafka_sink import KafkaLogSink
from controller.logs.kafka_status import KafkaStatusPublisher
from controller.logs.kafka_transport import KAFKA_CLIENTS
from controller.logs.spool_recovery import drain_orphans, orphan_spools, replica_spools
from controller.ports import LogLine
from tests.logs.conftest import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_orphaned_spool_is_drained_in_order(
    client: str, kafka: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    topic = f"tracectl.test.orphan.{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    task_id = f"orphan-{uuid.uuid4().hex[:8]}"
    # The runner's view: no broker where it looks (port 1), so nothing leaves the spool.
    unreachable = Settings(home=home, log_sink=f"kafka://127.0.0.1:1/{topic}")
    sink = KafkaLogSink(unreachable, {"run_id": "r", "task_id": task_id, "attempt": "1"})
    for seq in range(1, 301):
        sink.emit(LogLine("r", task_id, 1, seq, "stdout", f"orphan {seq}", datetime.now(UTC)))
    busy = KafkaLogSink(unreachable, {"run_id": "r", "task_id": "alive", "attempt": "1"})
    busy.emit(LogLine("r", "alive", 1, 1, "stdout", "still running", datetime.now(UTC)))
    sink.producer.close(0.5)  # gave up: the spool stays behind
    assert len(orphan_spools(unreachable)) == 2

    controller = Settings(home=home, log_sink=f"kafka://{bootstrap}/{topic}", kafka_client=client)
    reports = drain_orphans(controller)
    try:
        assert [r["delivered"] for r in reports] == [True]  # the live writer's spool skipped
        assert reports[0]["sent"] == 300
        values = read_topic(bootstrap, topic, task_id, until=300)
        assert [v["event"]["sequence"] for v in values] == list(range(1, 301))
        assert [p.parent.name for p in orphan_spools(controller)] == ["alive"]
    finally:
        busy.producer.close(0.1)
        delete_topic(bootstrap, topic)


def test_the_status_spool_of_a_replica_that_is_gone_is_drained_by_the_leader(
    kafka: dict[str, str], tmp_path: Path
) -> None:
    """Replicas share the home, each with its own status spool; the leader sends what a dead
    replica's spool holds, in order, and leaves a live replica's alone."""
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    topic = f"tracectl.test.status.{uuid.uuid4().hex[:8]}"
    home, task_id = tmp_path / "home", f"task{uuid.uuid4().hex[:8]}"

    def replica(name: str, broker: str) -> Settings:
        return Settings(home=home, status_events=f"kafka://{broker}/{topic}", replica=name)

    gone = KafkaStatusPublisher(replica("gone", "127.0.0.1:1"))  # Kafka unreachable for it
    for n in range(50):
        gone.publish({"labels": {"task_id": task_id}, "n": n})
    alive = KafkaStatusPublisher(replica("alive", "127.0.0.1:1"))
    alive.publish({"labels": {"task_id": "other"}, "n": 0})
    gone.producer.close(0.5)  # the replica died: its spool stays behind, its lock free
    leader = replica("leader", bootstrap)
    try:
        assert [p.name for p in replica_spools(leader, "status")] == ["alive", "gone"]
        reports = drain_orphans(leader)
        assert [(Path(r["spool"]).name, r["delivered"], r["sent"]) for r in reports] == [
            ("gone", True, 50)
        ]
        values = read_topic(bootstrap, topic, task_id, until=50)
        assert [v["n"] for v in values] == list(range(50))
        assert [p.name for p in replica_spools(leader, "status")] == ["alive"]
    finally:
        alive.producer.close(0.1)
        delete_topic(bootstrap, topic)


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
