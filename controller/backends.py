"""Backend selection: a setting (name or URI scheme) names the adapter; nothing else branches.

Adapters are imported lazily so that the embedded default never imports Kafka, S3 or
Kubernetes client libraries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from controller.config import Settings
from controller.ports import (
    ArtifactStore,
    Executor,
    ImageRegistry,
    LeaderElection,
    LineageSink,
    LogReader,
    LogSink,
    SearchIndex,
    StatusPublisher,
    Tracking,
)

if TYPE_CHECKING:
    from controller.store.database import Database

EXECUTORS = {
    "local": "controller.executors.local:LocalExecutor",
    "kubernetes": "controller.executors.kubernetes:KubernetesExecutor",
}
LOG_SINKS = {
    "file": "controller.logs.file_sink:FileLogSink",
    "kafka": "controller.logs.kafka_sink:KafkaLogSink",
}
LOG_READERS = {
    "file": "controller.logs.file_sink:FileLogReader",
    "opensearch": "controller.logs.search_reader:SearchLogReader",
    "opensearchs": "controller.logs.search_reader:SearchLogReader",
    "elasticsearch": "controller.logs.search_reader:SearchLogReader",
    "elasticsearchs": "controller.logs.search_reader:SearchLogReader",
}
# The search index behind a search log reader: one adapter per engine (the same query DSL).
SEARCH_INDEXES = {
    "opensearch": "controller.logs.search_opensearch:OpenSearchIndex",
    "opensearchs": "controller.logs.search_opensearch:OpenSearchIndex",
    "elasticsearch": "controller.logs.search_elasticsearch:ElasticsearchIndex",
    "elasticsearchs": "controller.logs.search_elasticsearch:ElasticsearchIndex",
}
ARCHIVES = {
    "local": "controller.archive.local:LocalArtifactStore",
    "file": "controller.archive.local:LocalArtifactStore",
    "s3": "controller.archive.s3:S3ArtifactStore",
}
STATUS_PUBLISHERS = {
    "none": "controller.logs.status_events:NoStatusEvents",
    "kafka": "controller.logs.kafka_status:KafkaStatusPublisher",
}
OPENLINEAGE_SINKS = {
    "http": "controller.emit.http_sink:HttpLineageSink",
    "https": "controller.emit.http_sink:HttpLineageSink",
    "kafka": "controller.emit.kafka_sink:KafkaLineageSink",
}
IMAGE_REGISTRIES = {
    "oci": "controller.registry.oci:OciRegistry",
}
TRACKING = {
    "mlflow": "controller.tracking.mlflow_tracking:MlflowTracking",
}
# Who leads the supervisor loops (docs/architecture.md, "High availability").
LEADER_ELECTIONS = {
    "store": "controller.store.leader_election:StoreElection",
    "kubernetes": "controller.election.kubernetes:KubernetesElection",
}


class UnknownBackend(ValueError):
    pass


def scheme(value: str) -> str:
    return value.split("://", 1)[0] if "://" in value else value


def _load(table: dict[str, str], kind: str, value: str) -> Any:
    key = scheme(value)
    if key not in table:
        raise UnknownBackend(f"unknown {kind} backend {value!r}; known: {sorted(table)}")
    module, _, attr = table[key].partition(":")
    return getattr(importlib.import_module(module), attr)


def executor(settings: Settings) -> Executor:
    from controller.executors.router import routed

    # The configured executor runs jobs; service/external modes are routed to theirs. The
    # executors that write task logs themselves get the sink factory: they import no backend.
    def sinks(labels: dict[str, str]) -> LogSink:
        return recording_log_sink(settings, labels)

    job_executor = _load(EXECUTORS, "executor", settings.executor)(settings, log_sinks=sinks)
    return routed(settings, job_executor, sinks)


def log_sink(settings: Settings, labels: dict[str, str]) -> LogSink:
    return cast(LogSink, _load(LOG_SINKS, "log sink", settings.log_sink)(settings, labels))


def recording_log_sink(settings: Settings, labels: dict[str, str]) -> LogSink:
    """The file record of every line, plus the configured sink when it is another one."""
    from controller.logs.file_sink import FileLogSink
    from controller.logs.tee import TeeSink

    record = FileLogSink(settings, labels)
    if scheme(settings.log_sink) == "file":
        return record
    return TeeSink([record, log_sink(settings, labels)])


def status_publisher(settings: Settings) -> StatusPublisher:
    return cast(
        StatusPublisher, _load(STATUS_PUBLISHERS, "status events", settings.status_events)(settings)
    )


def log_reader(settings: Settings) -> LogReader:
    value = settings.log_reader or "file"
    return cast(LogReader, _load(LOG_READERS, "log reader", value)(settings))


def is_search_index(uri: str) -> bool:
    return scheme(uri) in SEARCH_INDEXES


def search_index(uri: str) -> SearchIndex:
    return cast(SearchIndex, _load(SEARCH_INDEXES, "search index", uri)(uri))


def artifact_store(settings: Settings) -> ArtifactStore:
    return cast(ArtifactStore, _load(ARCHIVES, "archive", settings.archive)(settings))


def tracking(settings: Settings) -> Tracking:
    return cast(Tracking, _load(TRACKING, "tracking", "mlflow")(settings))


def openlineage_sink(settings: Settings) -> LineageSink | None:
    """Where OpenLineage events are sent (TRACECTL_OPENLINEAGE_URL / _KAFKA_TOPIC), or None."""
    opener = openlineage_sink_of(settings)
    return None if opener is None else opener()


def openlineage_sink_of(settings: Settings) -> Callable[[], LineageSink] | None:
    """What opens the OpenLineage sink (the leader opens it when it starts to lead), or None."""
    target = settings.openlineage_target
    if target == "none":
        return None
    return lambda: cast(LineageSink, _load(OPENLINEAGE_SINKS, "OpenLineage", target)(settings))


def image_registry(settings: Settings) -> ImageRegistry | None:
    """Where task image tags are resolved to digests (TRACECTL_REGISTRY_API), or None."""
    if settings.registry_api == "none":
        return None
    return cast(ImageRegistry, _load(IMAGE_REGISTRIES, "registry", settings.registry_api)(settings))


def leader_election(settings: Settings, db: Database, holder: str) -> LeaderElection:
    """The lease that elects the replica running the supervisor loops (HOLDER: this one)."""
    election = _load(LEADER_ELECTIONS, "leader election", settings.leader_election)
    return cast(LeaderElection, election(settings, db, holder))
