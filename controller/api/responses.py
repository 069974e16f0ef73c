"""Response models of the routes whose documents are not domain records (the API's contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.domain.records import Run, Task

Json = dict[str, Any]


class Open(BaseModel):
    """A document with these fields at least; a later version may add more."""

    model_config = ConfigDict(extra="allow")


# -- health -------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="component -> ok, stopped or error: …")
    role: Literal["leader", "follower"] | None = Field(
        None, description="whether this replica runs the supervisor loops (it holds the lease)"
    )


# -- runs and tasks -----------------------------------------------------------------------
class RunPage(BaseModel):
    items: list[Run]
    next_cursor: str | None = Field(description="the cursor of the next page; null at the end")


class TaskPage(BaseModel):
    items: list[Task]
    next_cursor: str | None = Field(description="the cursor of the next page; null at the end")


class Finding(BaseModel):
    code: str
    loc: list[str | int]
    message: str
    fix: str
    action: Literal["warn", "refuse", "ignore"]


class Preflight(BaseModel):
    name: str
    findings: list[Finding]
    refused: bool = Field(description="a finding's action is refuse: submission would be 422")


class LogLine(BaseModel):
    seq: int
    attempt: int
    stream: str
    timestamp: str
    message: str


class LogPage(BaseModel):
    items: list[LogLine]
    next_after_seq: int


# -- lineage ------------------------------------------------------------------------------
class Edge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from", description="node id")
    to: str = Field(description="node id")
    kind: str | None = None
    path: str | None = None


class RunLineageTask(BaseModel):
    id: str
    name: str
    status: str
    reason: str | None = None
    lineage: Json | None = Field(description="the task's lineage record, once it ended")


class RunLineage(BaseModel):
    run: Run
    tasks: list[RunLineageTask]
    edges: list[Edge]


class TaskLineage(Open):
    """The task's lineage record (complete) or what is resolved of it so far."""

    task_id: str
    status: str
    complete: bool


class LineageEvent(BaseModel):
    id: int
    task_id: str | None
    type: str
    payload: Json
    created_at: str


class LineageEventPage(BaseModel):
    items: list[LineageEvent]
    next_after_id: int


class Passport(Open):
    """Every identity a run touched, sealed: `content_sha256` (and `hmac_sha256` with a key)."""

    passport_version: int
    correlation_id: str
    issued_at: str
    run: Json
    airflow: Json
    tasks: list[Json]
    chains: Any
    content_sha256: str


class Node(Open):
    id: str
    kind: str
    label: str


class WalkNode(Node):
    depth: int


class Walk(BaseModel):
    node: str
    direction: Literal["upstream", "downstream"]
    depth: int
    items: list[WalkNode]
    edges: list[Edge]
    next_cursor: str | None


class RunGraph(BaseModel):
    run_id: str
    nodes: list[Node]
    edges: list[Edge]


class Lookup(Open):
    """Who produced, registered or used the node; a dataset look-up pages its runs."""

    node: str | None = None
    produced_by: list[Json] | None = None
    used_by: list[Json] | None = None
    registered_by: list[Json] | None = None
    items: list[Json] | None = None
    next_cursor: str | None = None


class Side(BaseModel):
    a: Any
    b: Any
    same: bool


class TaskDiff(Open):
    present: Side
    status: Side
    code: Side
    data: Side
    params: Side
    environment: Side
    command: Side
    metrics: Side
    outputs: dict[str, Side]
    same: bool


class RunDiff(BaseModel):
    a: str
    b: str
    tasks: dict[str, TaskDiff]
    identical_outputs: bool


class Reproduction(Open):
    run_id: str = Field(description="the new run")
    reproduces: str
    tasks: dict[str, str] = Field(description="task name -> the new task's id")
    unchecked: list[Any]


class OutputComparison(BaseModel):
    task: str
    path: str
    original: str | None
    reproduced: str | None
    identical: bool


class ReproductionComparison(BaseModel):
    run_id: str
    reproduces: str
    finished: bool
    identical: bool
    tasks: dict[str, dict[str, str]]
    outputs: list[OutputComparison]


class RunEvent(Open):
    """An OpenLineage RunEvent (docs/lineage.md names the schema version)."""

    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]
    eventTime: str
    producer: str
    schemaURL: str
    run: Json
    job: Json
    inputs: list[Json]
    outputs: list[Json]


class RunEvents(BaseModel):
    items: list[RunEvent]


class ProvDocument(Open):
    """A W3C PROV-JSON document."""

    prefix: dict[str, str]
    entity: dict[str, Json] | None = None
    activity: dict[str, Json] | None = None
    agent: dict[str, Json] | None = None


# -- leases -------------------------------------------------------------------------------
class Lease(BaseModel):
    id: int
    task_id: str
    team: str
    attempt: int
    resource: str
    kind: str
    mode: str
    exclusive: bool
    fencing_token: int
    cpu_milli: int | None
    memory_bytes: int | None
    granted_at: str
    expires_at: str
    released_at: str | None
    release_reason: str | None


class LeasePage(BaseModel):
    items: list[Lease]
    next_cursor: str | None


class Unit(Open):
    name: str
    kind: str
    holders: list[Json]
    queued_demand: int
    capacity: int | dict[str, int | None] | None
    in_use: int | dict[str, int]


class GpuPool(Open):
    pool: str | None
    flavor: str | None
    capacity: int
    in_use: int
    queued_demand: int
    free: int


class Resources(BaseModel):
    items: list[Unit]
    gpu_pools: list[GpuPool]


class QueueEntry(Open):
    position: int
    task_id: str
    run_id: str
    name: str
    team: str
    priority: int
    reason: str
    claims: Json


class Queue(BaseModel):
    items: list[QueueEntry]
    length: int


# -- logs ---------------------------------------------------------------------------------
class SearchHit(Open):
    id: str
    timestamp: str
    run_id: str
    task_id: str
    attempt: int
    seq: int
    stream: str
    level: str | None
    message: str


class LogSearch(BaseModel):
    items: list[SearchHit]
    count: int


class CopyCheck(Open):
    copy_name: str = Field(alias="copy", description="file, kafka, index or archive")
    attempt: int
    status: str


class LogCheck(BaseModel):
    task_id: str
    attempt: int | None
    copies: list[CopyCheck]


class LogReconciliation(BaseModel):
    task_id: str
    attempt: int
    summary: Json | None
    copies: list[CopyCheck]
