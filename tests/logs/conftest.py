"""Fixtures for the log pipeline tests: a controller wired to the real Kafka, a real search
engine (OpenSearch and Elasticsearch: ``engine`` runs each test against both; a test that names
``elasticsearch9`` also gets the Elasticsearch 9 node) fed by the real shipper (rsyslog), and S3,
plus helpers to read each of them back."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from controller import backends
from controller.api import routes_logs
from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService
from controller.ports import SearchIndex
from tests.core.conftest import Api
from tests.stack_fixtures import services
from tests.waiting import gather, poll_until

REPO = Path(__file__).resolve().parents[2]
INDEX = "logs-tracectl-*"
S3_ENV = (
    "TRACECTL_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


def service(name: str, action: str, timeout: float = 300) -> None:
    """deploy/local/<name> start|stop, failing the test with the script's output."""
    out = subprocess.run(
        [str(REPO / "deploy" / "local" / name), action],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, f"deploy/local/{name} {action}: {out.stdout}\n{out.stderr}"


def ensure_up(name: str) -> None:
    """Bring NAME back if an earlier test left it stopped (a stop/start test that failed)."""
    status = subprocess.run(
        [str(REPO / "deploy" / "local" / name), "status"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if status.returncode != 0:
        service(name, "start")


ENGINES = ["opensearch", "elasticsearch"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The search engine under test; a test that only needs one parametrizes ``engine``."""
    return str(request.param)


def engine_url(stack: dict[str, str], engine: str) -> str:
    """ENGINE's search index URI (``opensearch://host:port``, ``elasticsearch://...``; the
    Elasticsearch 9 node is ``elasticsearch://`` too: one adapter serves 8 and 9)."""
    scheme = "elasticsearch" if engine.startswith("elasticsearch") else engine
    return f"{scheme}://{stack[f'TRACECTL_{engine.upper()}_URL'].split('://', 1)[1]}"


@pytest.fixture
def shipper9(kafka: dict[str, str], elasticsearch9: dict[str, str]) -> dict[str, str]:
    """rsyslog shipping into the Elasticsearch 9 node (its own consumer group). Started per test
    (a no-op while it runs): `deploy/local/shipper stop` without engines stops it as well, and
    `deploy/local/down` at the end of CI."""
    env = {**os.environ, "TRACECTL_SHIPPER_ENGINES": "elasticsearch9"}
    script = str(REPO / "deploy" / "local" / "shipper")
    out = subprocess.run([script, "start"], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"deploy/local/shipper start (elasticsearch9): {out.stderr}"
    return elasticsearch9


def engine_of(request: pytest.FixtureRequest) -> str | None:
    """The ``engine`` a parametrized test runs with (None for a test without one)."""
    callspec = getattr(request.node, "callspec", None)
    return callspec.params.get("engine") if callspec else None


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    env = services(request, "kafka", "opensearch", "elasticsearch", "s3", "shipper")
    for name in ("kafka", "opensearch", "elasticsearch", "shipper"):
        ensure_up(name)
    for key in S3_ENV:
        if key in env:
            monkeypatch.setenv(key, env[key])  # the runner inherits the controller's environment
    # the 9.x node only for the tests that ask for it (one more JVM and rsyslogd otherwise)
    es9 = request.getfixturevalue("shipper9") if engine_of(request) == "elasticsearch9" else {}
    return {**env, **es9}


@pytest.fixture
def pipeline_settings(tmp_path: Path, stack: dict[str, str], engine: str) -> Settings:
    bootstrap = stack["TRACECTL_KAFKA_BOOTSTRAP"]
    return Settings(
        home=tmp_path / "home",
        supervisor_interval_s=0.05,
        cancel_grace_s=1.0,
        retry_backoff_s=0.1,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        log_sink=f"kafka://{bootstrap}",
        status_events=f"kafka://{bootstrap}",
        log_reader=engine_url(stack, engine),
        archive=f"s3://tracectl-logs-test/{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
def pipeline_api(pipeline_settings: Settings) -> Iterator[Api]:
    service = ControllerService(pipeline_settings)
    app = create_app(pipeline_settings, service=service)
    # GET /v1/logs/search, wired here as create_app is asked to wire it.
    app.include_router(routes_logs.build_router(service))
    with TestClient(app) as client:
        yield Api(client, pipeline_settings)


@pytest.fixture
def search(stack: dict[str, str], engine: str) -> SearchIndex:
    """The engine's index through the controller's own adapter (the engine's own client)."""
    return backends.search_index(engine_url(stack, engine))


def indexed(client: SearchIndex, task_id: str) -> list[dict[str, Any]]:
    """Every document of TASK_ID in the index, in event.sequence order."""
    client.refresh(INDEX)
    body = {
        "query": {"term": {"labels.task_id": task_id}},
        "size": 10000,
        "sort": [{"event.sequence": "asc"}],
    }
    hits = client.search(INDEX, body)["hits"]["hits"]
    return [{"_id": hit["_id"], **hit["_source"]} for hit in hits]


def wait_indexed(
    client: SearchIndex, task_id: str, count: int, timeout: float = 120
) -> list[dict[str, Any]]:

    def docs() -> list[dict[str, Any]]:
        try:
            return indexed(client, task_id)
        except Exception:  # the index may be coming back up
            return []

    if len(poll_until(docs, lambda found: len(found) >= count, timeout, 0.5)) < count:
        return docs()  # the caller's assertion says what is missing
    time.sleep(1.5)  # a duplicate still in flight would now show
    return indexed(client, task_id)


def read_topic(
    bootstrap: str, topic: str, key: str, until: int, timeout: float = 60
) -> list[dict[str, Any]]:
    """Values of records keyed KEY, in partition order, from the start of TOPIC."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)

        def values() -> list[dict[str, Any]]:
            batches = consumer.poll(timeout_ms=500).values()
            return [
                json.loads(r.value) for records in batches for r in records if r.key == key.encode()
            ]

        def at_end(out: list[dict[str, Any]]) -> bool:
            if not all(consumer.position(tp) >= ends[tp] for tp in parts):
                return False
            ends.update(consumer.end_offsets(parts))  # more may have come meanwhile
            return len(out) >= until

        return gather(values, at_end, timeout)
    finally:
        consumer.close()
