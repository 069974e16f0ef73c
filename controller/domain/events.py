"""The lineage event types: one model per event, the only place their names and fields are
declared (producers build them; the graph, cache, OpenLineage and PROV read them back)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from controller.domain.refs import MaybeRef


class EventType(StrEnum):
    RUN_CREATED = "run.created"
    RUN_CLOSED = "run.closed"
    RUN_REPRODUCES = "run.reproduces"
    TASK_SUBMITTED = "task.submitted"
    TASK_ADMITTED = "task.admitted"
    TASK_STARTED = "task.started"
    TASK_CACHED = "task.cached"
    TASK_COMPLETED = "task.completed"
    INPUT_USED = "input.used"
    OUTPUT_PRODUCED = "output.produced"
    MODEL_REGISTERED = "model.registered"
    SERVICE_READY = "service.ready"
    SERVICE_STOPPING = "service.stopping"


class LineageEvent(BaseModel):
    """The payload of one event; TYPE names it in the log."""

    model_config = ConfigDict(extra="allow", frozen=True)  # older rows may carry more
    type: ClassVar[EventType]

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class RunCreated(LineageEvent):
    type = EventType.RUN_CREATED
    pipeline: str | None = None  # and the rest of the run's request


class RunClosed(LineageEvent):
    type = EventType.RUN_CLOSED


class RunReproduces(LineageEvent):
    type = EventType.RUN_REPRODUCES
    reproduces: str
    unchecked: list[Any] = Field(default_factory=list)


class TaskSubmitted(LineageEvent):
    type = EventType.TASK_SUBMITTED
    name: str
    resolved: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)  # the stored spec, without env
    env_keys: list[str] = Field(default_factory=list)


class TaskAdmitted(LineageEvent):
    type = EventType.TASK_ADMITTED
    attempt: int
    leases: list[dict[str, Any]] = Field(default_factory=list)


class TaskStarted(LineageEvent):
    type = EventType.TASK_STARTED
    attempt: int
    executor: str | None = None
    ref: MaybeRef = None


class TaskCached(LineageEvent):
    type = EventType.TASK_CACHED
    cache_key: str
    cached_from_run: str
    cached_from_task: str
    outputs: list[dict[str, Any]] = Field(default_factory=list)


class TaskCompleted(LineageEvent):
    type = EventType.TASK_COMPLETED
    attempt: int
    status: str
    exit_code: int | None = None
    reason: str | None = None


class InputUsed(LineageEvent):
    type = EventType.INPUT_USED
    path: str
    sha256: str
    uri: str


class OutputProduced(LineageEvent):
    type = EventType.OUTPUT_PRODUCED
    path: str
    sha256: str
    uri: str
    size: int
    media_type: str


class ModelRegistered(LineageEvent):
    type = EventType.MODEL_REGISTERED
    name: str
    version: str
    source: str | None = None


class ServiceReady(LineageEvent):
    type = EventType.SERVICE_READY
    attempt: int
    url: str


class ServiceStopping(LineageEvent):
    type = EventType.SERVICE_STOPPING
    attempt: int
    why: str


MODELS: dict[EventType, type[LineageEvent]] = {m.type: m for m in LineageEvent.__subclasses__()}


def parse(kind: str, payload: dict[str, Any] | None) -> LineageEvent:
    """The model of an event read back from the log."""
    return MODELS[EventType(kind)].model_validate(payload or {})
