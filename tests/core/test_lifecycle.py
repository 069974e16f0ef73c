"""Executor lifecycle on the local executor: exit codes, logs, timeout, cancel, retry."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from tests.core.conftest import Api, python
from tests.waiting import wait_for


def test_success_outputs_and_logs_in_order(api: Api) -> None:
    code = (
        "import sys\n"
        "for i in range(300): print(f'line {i}', flush=True)\n"
        "sys.stdout.buffer.write(b'bytes \\xff\\xfe end\\n'); sys.stdout.flush()\n"
        "print('Traceback (most recent call last):\\n  File x\\nValueError: boom',\n"
        "      file=sys.stderr)\n"
        "open('out/r.txt','w').write('result')\n"
    )
    task = api.submit(
        api.run(),
        "ok",
        command=["sh", "-c", 'mkdir -p out && exec "$0" -c "$1"', python("")[0], code],
        outputs=["out"],
    )
    done = api.wait(task["id"])
    assert done["status"] == "succeeded", done
    assert done["exit_code"] == 0
    lines = api.logs(task["id"])
    messages = [x["message"] for x in lines if x["stream"] == "stdout"]
    assert messages[:300] == [f"line {i}" for i in range(300)]
    assert messages[300] == "bytes \\xff\\xfe end"  # non-UTF-8 bytes kept, escaped
    errors = [x["message"] for x in lines if x["stream"] == "stderr"]
    assert errors == ["Traceback (most recent call last):", "  File x", "ValueError: boom"]
    assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
    page = api.client.get(
        f"/v1/tasks/{task['id']}/logs", params={"after_seq": 100, "limit": 10}
    ).json()
    assert [x["seq"] for x in page["items"]] == list(range(101, 111))
    assert page["next_after_seq"] == 110
    artifacts = api.client.get(f"/v1/tasks/{task['id']}/artifacts").json()
    assert [(a["path"], a["size"]) for a in artifacts] == [("out/r.txt", 6)]


def test_nonzero_exit_fails_with_reason(api: Api) -> None:
    task = api.submit(api.run(), "bad", command=python("import sys; sys.exit(3)"))
    done = api.wait(task["id"])
    assert (done["status"], done["exit_code"], done["reason"]) == (
        "failed",
        3,
        "exited with code 3",
    )
    run = api.client.get(f"/v1/runs/{task['run_id']}").json()
    assert run["status"] == "failed"


def test_missing_program_fails_clearly(api: Api) -> None:
    task = api.submit(api.run(), "noprog", command=["definitely-not-a-program-xyz"])
    done = api.wait(task["id"])
    assert done["status"] == "failed"
    assert "cannot start 'definitely-not-a-program-xyz'" in done["reason"]


def test_declared_output_missing_fails(api: Api) -> None:
    task = api.submit(api.run(), "noout", command=python("pass"), outputs=["model.pkl"])
    done = api.wait(task["id"])
    assert done["status"] == "failed"
    assert "declared output 'model.pkl' was not produced" in done["reason"]


def test_timeout_kills_the_process(api: Api) -> None:
    task = api.submit(api.run(), "slow", command=python("import time; time.sleep(60)"), timeout_s=1)
    done = api.wait(task["id"], timeout=60)
    assert done["status"] == "failed"
    assert done["reason"].startswith("timed out after 1s")


def test_cancel_sigterm_then_sigkill(api: Api) -> None:
    # The command ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(120)\n"
    )
    task = api.submit(api.run(), "stubborn", command=python(code))
    running = api.wait_status(task["id"], "running")
    wait_for(
        "the task's 'ready' line",
        lambda: any(x["message"] == "ready" for x in api.logs(task["id"])),
        60,
        0.1,
    )
    pid = running["executor_ref"]["pid"]
    assert api.client.post(f"/v1/tasks/{task['id']}/cancel").status_code == 200
    done = api.wait(task["id"], timeout=60)
    assert done["status"] == "cancelled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = api.client.post(f"/v1/tasks/{task['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancel_queued_dependent_task(api: Api) -> None:
    run = api.run()
    api.submit(run, "up", command=python("import time; time.sleep(30)"), outputs=["x"])
    down = api.submit(
        run, "down", command=python("pass"), inputs=[{"artifact": "task:up/x", "path": "x"}]
    )
    assert down["status"] == "pending"
    cancelled = api.client.post(f"/v1/tasks/{down['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"


def test_retry_then_success(api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "attempted"
    code = (
        f"import pathlib, sys\np = pathlib.Path({str(marker)!r})\n"
        "if not p.exists():\n    p.write_text('1'); print('first try fails'); sys.exit(7)\n"
        "print('second try works')\n"
    )
    task = api.submit(api.run(), "flaky", command=python(code), retries=2)
    done = api.wait(task["id"])
    assert done["status"] == "succeeded"
    assert done["attempt"] == 2 and done["max_attempts"] == 3
    assert [x["message"] for x in api.logs(task["id"], attempt=1) if x["stream"] == "stdout"] == [
        "first try fails"
    ]
    assert [x["message"] for x in api.logs(task["id"], attempt=2) if x["stream"] == "stdout"] == [
        "second try works"
    ]


def test_retries_exhausted(api: Api) -> None:
    task = api.submit(api.run(), "always", command=python("import sys; sys.exit(1)"), retries=1)
    done = api.wait(task["id"])
    assert (done["status"], done["attempt"]) == ("failed", 2)


def test_secret_env_reaches_the_process_but_is_never_stored(api: Api) -> None:
    code = "import os; open('seen.txt','w').write(os.environ['API_KEY'])"
    task = api.submit(
        api.run(),
        "secret",
        command=python(code),
        outputs=["seen.txt"],
        env={"API_KEY": "s3cr3t-value", "PLAIN": "p"},
        secret_env=["API_KEY"],
    )
    assert task["spec"]["env"] == {"API_KEY": "***", "PLAIN": "p"}
    done = api.wait(task["id"])
    assert done["status"] == "succeeded", done["reason"]
    lineage = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    assert "s3cr3t-value" not in json.dumps(lineage)
    assert lineage["environment"]["env_keys"] == ["API_KEY", "PLAIN"]
    artifact = api.client.get(f"/v1/tasks/{task['id']}/artifacts").json()[0]
    assert Path(artifact["uri"].removeprefix("file://")).read_text() == "s3cr3t-value"
    db = api.settings.home / "tracectl.db"
    assert b"s3cr3t-value" not in db.read_bytes()


def test_follow_logs_streams_until_the_end(api: Api) -> None:
    code = "import time\nfor i in range(5):\n    print(i, flush=True); time.sleep(0.2)\n"
    task = api.submit(api.run(), "follow", command=python(code))
    with api.client.stream(
        "GET", f"/v1/tasks/{task['id']}/logs", params={"follow": "true"}
    ) as response:
        items = [json.loads(line) for line in response.iter_lines() if line]
    assert items[-1] == {"end": True, "status": "succeeded"}
    printed = [x["message"] for x in items if x.get("stream") == "stdout"]
    assert printed == [str(i) for i in range(5)]


def test_secret_values_are_redacted_from_logs_and_long_lines_cut(api: Api) -> None:
    code = "import os; print('token is', os.environ['TOKEN']); print('x' * 70000)"
    task = api.submit(
        api.run(),
        "leaky",
        command=python(code),
        env={"TOKEN": "hunter2-secret"},
        secret_env=["TOKEN"],
    )
    assert api.wait(task["id"])["status"] == "succeeded"
    lines = [x["message"] for x in api.logs(task["id"]) if x["stream"] == "stdout"]
    assert lines[0] == "token is ***"
    assert lines[1].endswith("[tracectl: 4464 characters cut]")
    assert len(lines[1]) < 66000


def test_oversized_requests_are_refused(api: Api) -> None:
    run = api.run()
    big = {"name": "t", "spec": {"command": ["x"], "params": {"blob": "y" * 300_000}}}
    response = api.client.post(f"/v1/runs/{run}/tasks", json=big)
    assert response.status_code == 422
    assert "params take" in response.json()["detail"]
    huge = api.client.post(
        f"/v1/runs/{run}/tasks",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert api.client.get("/v1/tasks", params={"run_id": run}).json()["items"] == []


@pytest.mark.timeout(200)
def test_a_long_poll_returns_at_the_end_its_controller_writes_not_at_a_round(api: Api) -> None:
    """No poll round and no timeout come within the test's limit: only the supervisor's
    word that the task ended can answer the long poll."""
    service = api.client.app.state.service  # type: ignore[attr-defined]
    service.waiters.poll_s = 3600
    task = api.submit(api.run(), "quick", command=python("print('done')"))
    waited = api.client.get(f"/v1/tasks/{task['id']}/wait", params={"timeout_s": 300}).json()
    assert waited["status"] == "succeeded", waited


def test_a_run_whose_only_task_was_cancelled_still_takes_tasks_until_it_is_cancelled(
    api: Api,
) -> None:
    # An Airflow DAG run's first tracectl task cancelled (a clear) before its siblings
    # submitted: the run's status reads "cancelled", yet the siblings and the next try join it.
    run = api.run()
    first = api.submit(run, "first", command=python("import time; time.sleep(30)"))
    assert api.client.post(f"/v1/tasks/{first['id']}/cancel").status_code == 200
    assert api.wait(first["id"], timeout=60)["status"] == "cancelled"
    assert api.client.get(f"/v1/runs/{run}").json()["status"] == "cancelled"
    again = api.submit(run, "first.try2", command=python("print('again')"))
    assert api.wait(again["id"])["status"] == "succeeded"

    cancelled = api.client.post(f"/v1/runs/{run}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["closed_at"] is not None
    late = api.client.post(
        f"/v1/runs/{run}/tasks", json={"name": "late", "spec": {"command": ["true"]}}
    )
    assert late.status_code == 409 and "takes no new tasks" in late.json()["detail"], late.text
