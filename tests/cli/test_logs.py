"""Item 6 of issue 19: logs paged on the server and streamed, with --tail, --grep, --since
and --stream (the speed is measured by bench/logs_cli.py, not asserted here)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Tracectl
from tests.server_process import ServerProcess

SCRIPT = """\
import sys
for i in range(3000):
    if i % 10 == 0:
        print(f'warning [{i}] slow step', file=sys.stderr)
    elif i == 5:
        print('a "quoted" word, a \\ backslash and café')
    else:
        print(f'step {i} loss=0.{i % 7}')
"""


@pytest.fixture
def task_id(tracectl: Tracectl, tmp_path: Path) -> str:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"command": ["python", "-c", SCRIPT]}))
    result = tracectl(f"submit {tmp_path / 'spec.yaml'} --name chatty --wait")
    assert result.exit_code == 0, result.output
    return result.stdout.split()[1]


def test_logs_print_every_line_and_the_filters_hold(tracectl: Tracectl, task_id: str) -> None:
    every = tracectl(f"logs {task_id}").stdout.splitlines()
    printed = [line for line in every if not line.startswith("sys ")]
    assert len(printed) == 3000
    outs = [line for line in printed if line.startswith("out ")]  # streams interleave freely
    assert outs[0] == "out step 1 loss=0.1"  # brackets and all below: no markup is applied
    assert outs[4] == 'out a "quoted" word, a \\ backslash and café'
    assert next(line for line in printed if line.startswith("err ")) == "err warning [0] slow step"
    tail = tracectl(f"logs {task_id} --tail 100").stdout.splitlines()
    assert tail == every[-100:]
    errors = tracectl(f"logs {task_id} --stream err").stdout.splitlines()
    assert len(errors) == 300 and all(line.startswith("err warning") for line in errors)
    grep = tracectl(f"logs {task_id} --grep 'loss=0\\.6$' --stream out").stdout.splitlines()
    assert grep == [line for line in printed if line.endswith("loss=0.6")] and len(grep) > 300
    last_two = tracectl(f"logs {task_id} --grep slow --tail 2").stdout.splitlines()
    assert last_two == ["err warning [2980] slow step", "err warning [2990] slow step"]


def test_since_takes_a_duration_or_a_time(tracectl: Tracectl, task_id: str) -> None:
    assert len(tracectl(f"logs {task_id} --since 1d --stream out").stdout.splitlines()) == 2700
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert tracectl(f"logs {task_id} --since {later}").stdout == ""


def test_follow_with_tail_prints_the_end_then_the_task_status(
    tracectl: Tracectl, task_id: str
) -> None:
    result = tracectl(f"logs {task_id} --follow --tail 3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == tracectl(f"logs {task_id} --tail 3").stdout.splitlines()
    assert "-- task succeeded --" in result.stderr


def test_bad_filters_are_exit_2_naming_the_option(tracectl: Tracectl, task_id: str) -> None:
    grep = tracectl(f"logs {task_id} --grep '('")
    assert grep.exit_code == 2 and "--grep" in grep.output
    stream = tracectl(f"logs {task_id} --stream stdin")
    assert stream.exit_code == 2 and "--stream stdin" in stream.output
    since = tracectl(f"logs {task_id} --since yesterday")
    assert since.exit_code == 2 and "--since" in since.output
    assert tracectl("logs task_nope --tail 5").exit_code == 3


# `tracectl logs` lines the fast start reads itself, and lines it hands to the typer app.
SAME_ANSWER = [
    "logs {task} --tail 100",
    "logs show {task} --stream=err --grep slow --since 1d",
    "logs {task} --follow --tail 3 --stream out --stream err",
    "logs task_nope --tail 5",
    "logs {task} --tail 0",
    "logs {task} --stream stdin",
    "logs {task} --grep '('",
    "logs {task} --since yesterday",
    "logs {task} extra",
    "logs show --help",
]


def as_typed(entry: str, line: str, url: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of LINE run through ENTRY as the `tracectl` command."""
    code = f"import sys\nsys.argv[0] = 'tracectl'\nfrom controller.cli.{entry}\ntracectl()"
    done = subprocess.run(
        [sys.executable, "-c", code, *shlex.split(line)],
        capture_output=True,
        text=True,
        env={**os.environ, "TRACECTL_URL": url, "COLUMNS": "80"},
    )
    return done.returncode, done.stdout, done.stderr


def test_the_command_answers_every_logs_line_as_the_typer_app_does(
    task_id: str, controller: ServerProcess
) -> None:
    for template in SAME_ANSWER:
        line = template.format(task=task_id)
        fast = as_typed("entry import main as tracectl", line, controller.url)
        assert fast == as_typed("main import app as tracectl", line, controller.url), line
        assert fast[0] in (0, 2, 3) and (fast[1] or fast[2]), line
