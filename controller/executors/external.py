"""Tasks that call an external system over HTTP (`mode: external`).

The systems are registered in a YAML file named by TRACECTL_EXTERNAL_SYSTEMS:

    systems:
      labeler:
        base_url: https://labeler.internal/api
        auth_header: Authorization      # optional: header to send...
        auth_env: LABELER_TOKEN         # ...with the value of this controller env variable
        timeout_s: 30                   # per request
        retries: 3                      # extra tries on connection errors, 429 and 5xx
        backoff_s: 0.5                  # doubled after each try

A task names the call in its argv: `command: [labeler, POST, /v1/jobs]`; its `params`
are the JSON body (the query string for GET and DELETE). The request and the response
(status, then the body line by line) go to the task's log like any other output; exit
code 0 on 2xx. The call runs in a controller thread; its result is written to the
workspace, so a finished call is read back after a restart. A call that was in flight
during a restart is reported missing: its outcome is unknown (the Idempotency-Key header,
task id + attempt, lets the system recognise a retry).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field

from controller.config import Settings
from controller.domain.refs import ExecutorRef, ExternalRef
from controller.logs.file_sink import file_record
from controller.ports import ExecutorState, Launch, LogLine, LogSink, LogSinkFactory

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_BODY_LINES = 10_000


class UnknownSystem(ValueError):
    pass


class System(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)
    auth_header: str | None = None
    auth_env: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=2, ge=0, le=20)
    backoff_s: float = Field(default=0.5, ge=0)


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: dict[str, System] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> Registry:
        if not path:
            return cls()
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})

    def credential_env(self) -> set[str]:
        """The controller env variables that hold the systems' credentials."""
        return {s.auth_env for s in self.systems.values() if s.auth_env}

    def get(self, name: str) -> System:
        if name not in self.systems:
            raise UnknownSystem(
                f"external system {name!r} is not registered; known: "
                f"{sorted(self.systems)} (TRACECTL_EXTERNAL_SYSTEMS)"
            )
        return self.systems[name]


class _Log:
    def __init__(self, sink: LogSink, launch: Launch) -> None:
        self.sink, self.launch, self.seq = sink, launch, 0

    def write(self, stream: str, message: str) -> None:
        self.seq += 1
        self.sink.emit(
            LogLine(
                self.launch.run_id,
                self.launch.task_id,
                self.launch.attempt,
                self.seq,
                stream,
                message,
                datetime.now(UTC),
            )
        )


def parse_call(argv: list[str]) -> tuple[str, str, str]:
    """(system, method, path) from a task's argv: `[system, METHOD, /path]`."""
    if len(argv) != 3 or argv[1].upper() not in METHODS:
        raise ValueError(f"an external task's command is [system, METHOD, /path], got {argv}")
    return argv[0], argv[1].upper(), argv[2]


def _ref(launch: Launch) -> ExternalRef:
    system, method, path = parse_call(list(launch.spec.command))
    return ExternalRef(
        system=system, method=method, path=path, key=f"{launch.task_id}/{launch.attempt}"
    )


def _external(ref: ExecutorRef) -> ExternalRef:
    if not isinstance(ref, ExternalRef):
        raise TypeError(f"the external executor was handed a {ref.kind!r} reference")
    return ref


class ExternalExecutor:
    name = "external"

    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        environ: Mapping[str, str] | None = None,
        log_sinks: LogSinkFactory | None = None,
    ) -> None:
        self.settings = settings
        # The systems' credentials: variables the registry names (auth_env), any name, so
        # read from the controller's environment as the call is made, not a Settings field.
        self.environ = os.environ if environ is None else environ
        self.log_sinks = log_sinks or file_record(settings)
        self.registry = registry or Registry.load(settings.external_systems)
        self._calls: dict[str, threading.Thread] = {}

    def launch(self, launch: Launch) -> ExternalRef:
        launch = launch.completed()
        ref = _ref(launch)
        system = self.registry.get(ref.system)
        launch.workspace.mkdir(parents=True, exist_ok=True)
        thread = threading.Thread(
            target=self._call,
            args=(launch, system, ref.method, ref.path),
            name=f"external-{ref.key}",
            daemon=True,
        )
        self._calls[ref.key] = thread
        thread.start()
        return ref

    def find(self, launch: Launch) -> ExternalRef | None:
        """A call that ended before the controller stopped is adopted with its result. One
        cut off in flight is not resumable: the supervisor launches the attempt again (with
        the same Idempotency-Key)."""
        return _ref(launch) if (launch.workspace / "result.json").exists() else None

    def inspect(self, ref: ExecutorRef, workspace: Path) -> ExecutorState:
        call = _external(ref)
        result_file = workspace / "result.json"
        if result_file.exists():
            result = json.loads(result_file.read_text())
            return ExecutorState("exited", result.get("exit_code"), result.get("reason"), result)
        thread = self._calls.get(call.key)
        if thread is not None and thread.is_alive():
            return ExecutorState("running")
        if result_file.exists():
            return self.inspect(ref, workspace)
        return ExecutorState(
            "missing",
            reason="the call to external system "
            f"{call.system!r} was in flight when the controller stopped; "
            "its outcome is unknown",
        )

    def cancel(self, ref: ExecutorRef, grace_s: float) -> None:
        thread = self._calls.get(_external(ref).key)
        if thread is not None:
            thread.join(grace_s)  # a request in flight is not interruptible; its timeout bounds it

    def cleanup(self, ref: ExecutorRef) -> None:
        self._calls.pop(_external(ref).key, None)

    # -- the call -------------------------------------------------------------------------
    def _call(self, launch: Launch, system: System, method: str, path: str) -> None:
        labels = {
            "run_id": launch.run_id,
            "task_id": launch.task_id,
            "attempt": str(launch.attempt),
            "executor": "external",
        }
        sink = self.log_sinks(labels)
        out = _Log(sink, launch)
        started = datetime.now(UTC)
        try:
            result = self._request(out, launch, system, method, path)
        except Exception as exc:  # the attempt must always leave a result behind
            out.write("system", f"tracectl: external call failed: {exc!r}")
            result = {"exit_code": None, "reason": f"external call failed: {exc!r}"}
        finally:
            sink.close()
        result.update(
            started_at=started.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            log_lines=out.seq,
        )
        tmp = launch.workspace / "result.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(launch.workspace / "result.json")

    def _request(
        self, out: _Log, launch: Launch, system: System, method: str, path: str
    ) -> dict[str, Any]:
        params = launch.spec.params
        headers = {
            "Idempotency-Key": f"{launch.task_id}-{launch.attempt}",
            "X-Tracectl-Run-Id": launch.run_id,
            "X-Tracectl-Task-Id": launch.task_id,
        }
        if system.auth_header and system.auth_env:
            secret = self.environ.get(system.auth_env)
            if not secret:
                raise UnknownSystem(
                    f"{system.auth_env} is not set: the credential for {system.base_url} is missing"
                )
            headers[system.auth_header] = secret
        url = system.base_url.rstrip("/") + "/" + path.lstrip("/")
        body_kw: dict[str, Any] = (
            {"params": params} if method in ("GET", "DELETE") else {"json": params}
        )
        tries = system.retries + 1
        with httpx.Client(timeout=system.timeout_s) as http:
            for attempt in range(1, tries + 1):
                out.write("system", f"tracectl: {method} {url} (try {attempt}/{tries})")
                try:
                    response = http.request(method, url, headers=headers, **body_kw)
                except httpx.HTTPError as exc:
                    out.write("system", f"tracectl: {type(exc).__name__}: {exc}")
                    if attempt == tries:
                        return {
                            "exit_code": None,
                            "reason": f"{method} {url} failed after "
                            f"{tries} tries: {type(exc).__name__}",
                        }
                else:
                    out.write(
                        "system", f"tracectl: HTTP {response.status_code} {response.reason_phrase}"
                    )
                    for line in response.text.splitlines()[:MAX_BODY_LINES]:
                        out.write("stdout", line)
                    if response.status_code not in RETRY_STATUSES or attempt == tries:
                        return self._result(response, method, url)
                time.sleep(system.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable: the last try returns")

    @staticmethod
    def _result(response: httpx.Response, method: str, url: str) -> dict[str, Any]:
        ok = response.is_success
        result: dict[str, Any] = {"exit_code": 0 if ok else 1, "http_status": response.status_code}
        if not ok:
            result["reason"] = f"{method} {url} answered HTTP {response.status_code}"
        return result
