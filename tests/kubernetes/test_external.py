"""`mode: external`: a task that calls a registered HTTP system, against a real HTTP server
(http.server on 127.0.0.1, started here), through the ModeRouter as the supervisor uses it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.config import Settings
from controller.domain.launch import LaunchDocument, RuntimeSettings
from controller.domain.refs import ExecutorRef
from controller.domain.spec import TaskMode, TaskSpec
from controller.executors.external import ExternalExecutor, Registry
from controller.executors.router import ModeRouter, UnroutableTask
from controller.logs.file_sink import FileLogReader
from controller.ports import ExecutorState, Launch
from tests.waiting import wait_for


class Recorder(BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []
    fail_first: int = 0

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        Recorder.calls.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if "/slow" in self.path:
            time.sleep(2)
        if Recorder.fail_first > 0:
            Recorder.fail_first -= 1
            code, text = 503, "busy\n"
        elif "/missing" in self.path:
            code, text = 404, "no such job\n"
        else:
            code, text = 200, json.dumps({"accepted": True}) + "\nsecond line\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(text.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None: ...


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.calls, Recorder.fail_first = [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def executor(tmp_path: Path, server: str) -> ExternalExecutor:
    registry = tmp_path / "systems.yaml"
    registry.write_text(f"""systems:
  labeler:
    base_url: {server}/api
    auth_header: Authorization
    auth_env: LABELER_TOKEN
    timeout_s: 1
    retries: 2
    backoff_s: 0.05
""")
    return ExternalExecutor(
        Settings(home=tmp_path / "home", external_systems=registry),
        environ={"LABELER_TOKEN": "Bearer s3cret"},
    )


def launch(tmp_path: Path, command: list[str], attempt: int = 1, **spec: Any) -> Launch:
    workspace = tmp_path / "ws" / str(attempt)
    doc = LaunchDocument(
        run_id="run_1",
        task_id="task_1",
        task_name="label",
        attempt=attempt,
        spec=TaskSpec(command=command, mode=TaskMode.EXTERNAL, **spec),
        runtime=RuntimeSettings(home=tmp_path / "home"),
    )
    return Launch(doc, workspace)


def wait(executor: Any, ref: ExecutorRef, workspace: Path) -> ExecutorState:
    def ended() -> ExecutorState | None:
        state: ExecutorState = executor.inspect(ref, workspace)
        return state if state.phase != "running" else None

    return wait_for("the external call to end", ended, 20, every=0.05)


def test_post_succeeds_and_logs_the_response(executor: ExternalExecutor, tmp_path: Path) -> None:
    router = ModeRouter({"job": executor, "external": executor})
    item = launch(tmp_path, ["labeler", "POST", "/v1/jobs"], params={"dataset": "wine"})
    ref = router.launch(item)
    assert ref.kind == "external"
    state = wait(router, ref, item.workspace)
    assert (state.phase, state.exit_code, state.reason) == ("exited", 0, None)
    (call,) = Recorder.calls
    assert call["method"] == "POST" and call["path"] == "/api/v1/jobs"
    assert json.loads(call["body"]) == {"dataset": "wine"}
    assert call["headers"]["Authorization"] == "Bearer s3cret"
    assert call["headers"]["Idempotency-Key"] == "task_1-1"
    lines = FileLogReader(executor.settings).read("run_1", "task_1", 1, 0, 100)
    assert [(x.stream, x.message) for x in lines if x.stream == "stdout"] == [
        ("stdout", '{"accepted": true}'),
        ("stdout", "second line"),
    ]
    assert any("HTTP 200" in x.message for x in lines)
    assert all("s3cret" not in x.message for x in lines)


def test_retries_with_backoff_on_503(executor: ExternalExecutor, tmp_path: Path) -> None:
    Recorder.fail_first = 2
    item = launch(tmp_path, ["labeler", "GET", "/status"], params={"q": "1"})
    state = wait(executor, executor.launch(item), item.workspace)
    assert state.exit_code == 0
    assert [c["path"] for c in Recorder.calls] == ["/api/status?q=1"] * 3


def test_http_error_fails_with_reason(executor: ExternalExecutor, tmp_path: Path) -> None:
    item = launch(tmp_path, ["labeler", "GET", "/missing"])
    state = wait(executor, executor.launch(item), item.workspace)
    assert state.exit_code == 1 and state.result is not None
    assert state.reason is not None and "HTTP 404" in state.reason
    assert state.result["http_status"] == 404


def test_timeout_is_retried_then_fails(executor: ExternalExecutor, tmp_path: Path) -> None:
    item = launch(tmp_path, ["labeler", "POST", "/slow"])
    state = wait(executor, executor.launch(item), item.workspace)
    assert state.exit_code is None
    assert state.reason is not None and "failed after 3 tries: ReadTimeout" in state.reason
    assert len(Recorder.calls) == 3


def test_unknown_system_and_mode_are_refused(executor: ExternalExecutor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not registered"):
        executor.launch(launch(tmp_path, ["nope", "GET", "/x"]))
    with pytest.raises(UnroutableTask):
        ModeRouter({"job": executor}).launch(launch(tmp_path, ["labeler", "GET", "/x"]))


def test_a_call_lost_in_a_restart_is_missing(
    executor: ExternalExecutor, tmp_path: Path, server: str
) -> None:
    item = launch(tmp_path, ["labeler", "POST", "/slow"], attempt=2)
    ref = executor.launch(item)
    restarted = ExternalExecutor(executor.settings, registry=Registry())
    assert restarted.find(item) is None
    assert restarted.inspect(ref, item.workspace).phase == "missing"
    wait(executor, ref, item.workspace)


def test_a_call_that_ended_before_a_restart_is_adopted_with_its_result(
    executor: ExternalExecutor, tmp_path: Path
) -> None:
    item = launch(tmp_path, ["labeler", "POST", "/v1/jobs"])
    ref = executor.launch(item)
    assert wait(executor, ref, item.workspace).exit_code == 0
    restarted = ExternalExecutor(executor.settings, registry=Registry())
    found = restarted.find(item)  # its reference was never stored: the launch was cut off
    assert found == ref
    state = restarted.inspect(found, item.workspace)
    assert (state.phase, state.exit_code) == ("exited", 0)
    assert len(Recorder.calls) == 1  # not called again
