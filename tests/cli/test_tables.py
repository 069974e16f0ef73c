"""Items 2, 3 and 5 of issue 19: whole ids, newest first, a run column, `-o` formats, the
queue reason while `--wait`ing, and `tracectl logs TASK --follow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.cli.conftest import Tracectl
from tests.server_process import ServerProcess


def submit(tracectl: Tracectl, spec: Path, name: str, *extra: str) -> str:
    result = tracectl(f"submit {spec} --name {name}", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[1]


def test_ids_are_whole_at_80_columns_and_tasks_list_newest_first(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "echo.yaml"
    spec.write_text("command: [python, -c, \"print('hi')\"]\n")
    first, second = submit(tracectl, spec, "first"), submit(tracectl, spec, "second")
    listed = tracectl("tasks --limit 2")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["TASK", "NAME", "RUN", "STATUS"]
    assert [r.split()[0] for r in rows] == [second, first]  # whole ids, the newest first
    assert rows[0].split()[2].startswith("run_") and "…" not in listed.stdout
    runs = tracectl("runs --limit 2")
    assert all(
        "…" not in line and line.split()[0].startswith("run_")
        for line in runs.stdout.splitlines()[1:]
    )


def test_every_list_and_show_command_takes_output_formats(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "echo.yaml"
    spec.write_text("command: [python, -c, \"print('hi')\"]\n")
    task_id = submit(tracectl, spec, "formats")
    task = json.loads(tracectl(f"tasks {task_id} -o json").stdout)
    assert task["id"] == task_id and task["spec"]["command"][0] == "python"
    assert yaml.safe_load(tracectl(f"tasks {task_id} -o yaml").stdout)["id"] == task_id
    assert "ATTEMPT" in tracectl(f"tasks {task_id} -o wide").stdout
    assert tracectl(f"tasks {task_id}").stdout.split()[:2] == ["TASK", task_id]
    run_id = task["run_id"]
    assert json.loads(tracectl(f"runs show {run_id} -o json").stdout)["id"] == run_id
    assert yaml.safe_load(tracectl("runs --limit 3 -o yaml").stdout)[0]["id"].startswith("run_")
    assert "CLOSED" in tracectl("runs -o wide --limit 1").stdout
    assert "ATTEMPT" in tracectl(f"tasks --run {run_id} -o wide").stdout
    assert tracectl("tasks -o xml").exit_code == 2


def test_wait_prints_the_queue_reason_as_it_changes(
    controller: ServerProcess, tracectl: Tracectl, tmp_path: Path
) -> None:
    holder = tmp_path / "holder.yaml"
    holder.write_text(
        'command: [python, -c, "import time; time.sleep(600)"]\n'
        "resources: {volumes: [{claim: scratch, mode: rw}]}\n"
    )
    holder_id = submit(tracectl, holder, "holder")
    waiter = tmp_path / "waiter.yaml"
    waiter.write_text(
        'command: [python, -c, "print(1)"]\nresources: {volumes: [{claim: scratch, mode: rw}]}\n'
    )
    env = {**os.environ, "TRACECTL_URL": controller.url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli.main",
            "submit",
            str(waiter),
            "--name",
            "waiter",
            "--wait",
        ],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "queued (" in line and "scratch" in line:
            break
    assert any("scratch" in line for line in seen), seen
    httpx.post(f"{controller.url}/v1/tasks/{holder_id}/cancel", timeout=10)
    rest = proc.stdout.read()
    assert proc.wait(timeout=300) == 0, [*seen, rest]
    assert "succeeded" in rest  # the next state printed once the volume was free


def test_logs_task_follow_as_the_readme_writes_it(tracectl: Tracectl, tmp_path: Path) -> None:
    spec = tmp_path / "count.yaml"
    spec.write_text(
        "command: [python, -c, \"import time\\nfor i in range(5): print('n', i); "
        'time.sleep(0.2)"]\n'
    )
    task_id = submit(tracectl, spec, "count")
    followed = tracectl(f"logs {task_id} --follow")
    assert followed.exit_code == 0, followed.output
    assert [line for line in followed.stdout.splitlines() if line.startswith("out n")] == [
        f"out n {i}" for i in range(5)
    ]
    assert "-- task succeeded --" in followed.stderr


def test_an_unreachable_controller_is_exit_4_with_advice(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli.main",
            "logs",
            "task_x",
            "--follow",
            "--url",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4 and "cannot reach the controller" in result.stderr
    assert "Traceback" not in result.stderr
