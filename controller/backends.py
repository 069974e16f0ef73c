"""Backend selection: a setting (name or URI scheme) names the adapter; nothing else branches.

Adapters are imported lazily so that the embedded default never imports Kafka, S3 or
Kubernetes client libraries.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from controller.config import Settings
from controller.ports import ArtifactStore, Executor, LogReader, LogSink, Tracking

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
    "kafka": "controller.logs.file_sink:FileLogReader",
}
ARCHIVES = {
    "local": "controller.archive.local:LocalArtifactStore",
    "file": "controller.archive.local:LocalArtifactStore",
    "s3": "controller.archive.s3:S3ArtifactStore",
}
TRACKING = {
    "mlflow": "controller.tracking.mlflow_tracking:MlflowTracking",
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
    return cast(Executor, _load(EXECUTORS, "executor", settings.executor)(settings))


def log_sink(settings: Settings, labels: dict[str, str]) -> LogSink:
    return cast(LogSink, _load(LOG_SINKS, "log sink", settings.log_sink)(settings, labels))


def log_reader(settings: Settings) -> LogReader:
    return cast(LogReader, _load(LOG_READERS, "log reader", settings.log_sink)(settings))


def artifact_store(settings: Settings) -> ArtifactStore:
    return cast(ArtifactStore, _load(ARCHIVES, "archive", settings.archive)(settings))


def tracking(settings: Settings) -> Tracking:
    return cast(Tracking, _load(TRACKING, "tracking", "mlflow")(settings))
