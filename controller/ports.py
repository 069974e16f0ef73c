"""The interfaces between the core and its backends (ports). Backends implement them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from controller.domain.images import ImageRef
from controller.domain.launch import LaunchDocument
from controller.domain.refs import ExecutorRef
from controller.domain.spec import TaskSpec

LAUNCH_FILE = "launch.json"  # in the attempt's workspace


@dataclass(frozen=True)
class LogLine:
    """One line of a task's output, as every log sink stores it."""

    run_id: str
    task_id: str
    attempt: int
    seq: int
    stream: str  # stdout | stderr | system
    message: str
    timestamp: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


class LogSink(Protocol):
    """Where a task's log lines go as they are produced."""

    def emit(self, line: LogLine) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# Makes the sink of one attempt's lines from its labels (run_id, task_id, attempt...): given to
# the executors that write task logs themselves, so they never import the composition root.
LogSinkFactory = Callable[[dict[str, str]], LogSink]


class StatusPublisher(Protocol):
    """Where task status events (submitted, admitted, started, finished...) are published."""

    # False when events go nowhere: the caller then skips reading what an event would carry
    # (two store reads per transition, on the dispatch path).
    publishes: bool

    def publish(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class LogReader(Protocol):
    """Reads log lines back, for the API and CLI."""

    def read(
        self, run_id: str, task_id: str, attempt: int | None, after_seq: int, limit: int
    ) -> list[LogLine]: ...

    def summary(self, run_id: str, task_id: str, attempt: int) -> dict[str, Any]: ...


class SearchIndex(Protocol):
    """The calls the log path makes on a search index (OpenSearch or Elasticsearch)."""

    pattern: str  # the index pattern its URI names (logs-tracectl-* by default)

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def create(self, index: str, doc_id: str, document: dict[str, Any]) -> bool:
        """Index DOCUMENT under DOC_ID unless that id exists; False when it did."""
        ...

    def refresh(self, index: str) -> None: ...

    def delete_ids(self, index: str, ids: list[str]) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    uri: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Content-addressed storage of task outputs and archived logs."""

    def put_file(self, path: Path, key: str | None = None) -> StoredObject: ...

    def get_file(self, uri: str, dest: Path) -> None: ...

    def exists(self, uri: str) -> bool: ...

    def open_bytes(self, uri: str) -> bytes: ...


@dataclass(frozen=True)
class Launch:
    """What an executor needs to start one attempt of a task: its launch document (the only
    thing the runtime reads) and where the attempt's workspace is."""

    document: LaunchDocument
    workspace: Path
    # Some values exist only once the attempt's tracking run does (the env keys the launch
    # document lists under `late_env`, e.g. MLFLOW_RUN_ID). An executor whose task cannot
    # start before a later step of its own (Kubernetes: the pod waits for its launch Secret)
    # creates its objects first and completes the launch before that step, which keeps the
    # tracking server off the dispatch path; the others complete it before anything else.
    completion: Callable[[], Launch] | None = field(default=None, compare=False, repr=False)

    def completed(self) -> Launch:
        """The launch with every value filled in (idempotent)."""
        return self.completion() if self.completion is not None else self

    @property
    def launch_file(self) -> Path:
        return self.workspace / LAUNCH_FILE

    def write(self) -> None:
        """The document as the workspace's launch file, whole (replacing what is there)."""
        self._written(self.document).replace(self.launch_file)

    def write_pending(self) -> None:
        """The document before its late env values, unless a launch file is there already:
        the complete one, written meanwhile by the thread that made them, must stay."""
        tmp = self._written(self.document.pending())
        try:
            os.link(tmp, self.launch_file)  # created only where no file is
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def _written(self, document: LaunchDocument) -> Path:
        self.workspace.mkdir(parents=True, exist_ok=True)
        # one temporary file per thread: the pending and the complete document may cross
        tmp = self.workspace / f".{LAUNCH_FILE}.{threading.get_ident()}.tmp"
        tmp.write_text(document.as_json())
        tmp.chmod(0o600)  # it carries secret env values
        return tmp

    @property
    def run_id(self) -> str:
        return self.document.run_id

    @property
    def task_id(self) -> str:
        return self.document.task_id

    @property
    def task_name(self) -> str:
        return self.document.task_name

    @property
    def attempt(self) -> int:
        return self.document.attempt

    @property
    def env(self) -> Mapping[str, str]:
        return self.document.env

    @property
    def spec(self) -> TaskSpec:
        return self.document.spec


@dataclass(frozen=True)
class ExecutorState:
    """What the executor really sees of an attempt."""

    phase: str  # running | exited | missing
    exit_code: int | None = None
    reason: str | None = None
    result: Mapping[str, Any] | None = None


class Executor(Protocol):
    name: str

    def launch(self, launch: Launch) -> ExecutorRef:
        """Start the attempt; return a reference (pid, job name...) to find it again."""
        ...

    def find(self, launch: Launch) -> ExecutorRef | None:
        """Find an attempt launched before a restart whose reference was not yet recorded."""
        ...

    # Each executor is handed only the references it made (the router goes by their mode).
    def inspect(self, ref: ExecutorRef, workspace: Path) -> ExecutorState: ...

    def cancel(self, ref: ExecutorRef, grace_s: float) -> None: ...

    def cleanup(self, ref: ExecutorRef) -> None: ...


class Tracking(Protocol):
    """Experiment tracking (MLflow): one tracking run per task attempt."""

    uri: str

    def start_run(
        self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> tuple[str, str]:
        """Create a tracking run; return (experiment_id, run_id)."""
        ...

    def log_dataset_inputs(self, run_id: str, datasets: Sequence[Mapping[str, str]]) -> None: ...

    def finish_run(self, run_id: str, status: str) -> None: ...

    def metrics(self, run_id: str) -> dict[str, float]: ...

    def iter_model_versions(self, run_id: str) -> Iterator[dict[str, str]]: ...

    def has_model_version(self, name: str, version: str) -> bool:
        """Whether the registry still holds model NAME at VERSION."""
        ...


class LineageSink(Protocol):
    """Where OpenLineage events go (an HTTP endpoint, a Kafka topic), through a disk spool.

    ``put`` queues one event durably and returns False when the spool is full (the caller
    keeps it and offers it again); delivery happens in ``put`` order, in the background.
    """

    def put(self, run_id: str, event: bytes) -> bool: ...

    def flush(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class ImageRegistry(Protocol):
    """The image registry API (OCI distribution): what a tag or digest names now."""

    def digest(self, image: ImageRef) -> str | None:
        """The digest of the manifest IMAGE names (its digest, else its tag); None when the
        registry has no such manifest. Raises RegistryError when it cannot be asked."""
        ...


class LeaderElection(Protocol):
    """Who leads the supervisor loops: one holder of a lease at a time (backends.py picks
    the store's `leader` row or a Kubernetes Lease). The fencing epoch is the store's."""

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; whether it is ours now."""
        ...

    def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours."""
        ...

    def release(self) -> None:
        """Give our lease up (a clean stop), so that another replica leads at once."""
        ...
