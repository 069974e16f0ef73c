"""Item 3 of issue 19: every command in the README's code blocks works as written.

`.venv/bin/tracectl ...` lines run for real against the README's own `tracectl server` line
(on a free port), with RUN_ID/TASK_ID taken from what the commands before them printed and
spec.yaml/pipeline.yaml written for the purpose; the README's example spec must validate as a
TaskSpec. `scripts/...` lines must be executable scripts: `scripts/demo` is `tracectl demo`,
run by test_demo_output.py; `scripts/test` is the suite itself; `scripts/demo-airflow` is
tests/airflow's.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from controller.domain.spec import TaskSpec
from controller.loopback import free_port
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
SPEC = "command: [python, -c, \"import json, os; print(os.environ['TRACECTL_PARAMS'])\"]\n"
PIPELINE = """\
pipeline: readme
params:
  epochs: {default: 1, type: integer, minimum: 1}
tasks:
  fit:
    command: [python, -c, "import os; print('fit', os.environ['TRACECTL_PARAMS'])"]
    params: {epochs: "{{ params.epochs }}"}
"""


def commands() -> list[str]:
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", README, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            lines += [part.strip() for part in command.split(";") if part.strip()]
    return lines


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def server(tmp_path: Path, mlflow_uri: str) -> Iterator[str]:
    line = next(c for c in commands() if c.startswith(".venv/bin/tracectl server"))
    port = free_port()
    args = [str(REPO / line.split()[0]), *shlex.split(line)[1:], "--port", str(port)]
    env = {**os.environ, "TRACECTL_TRACKING_URI": mlflow_uri}
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_for("the README's server to become ready", lambda: ready(url), timeout=120, every=0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.timeout(600)
def test_every_readme_command_runs_as_written(server: str, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    env = {**os.environ, "TRACECTL_URL": server, "COLUMNS": "80"}
    ids: dict[str, str] = {}
    ran = []
    for command in commands():
        if command.startswith("scripts/"):
            script = REPO / command.split()[0]
            assert script.is_file() and os.access(script, os.X_OK), command
            continue
        if command.startswith(".venv/bin/tracectl server"):
            continue
        args = [ids.get(word, word) for word in shlex.split(command)]
        args[0] = str(REPO / args[0])
        result = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        found = re.search(r"task (task_\w+) in run (run_\w+)", result.stdout)
        if found:
            ids.update(TASK_ID=found[1], RUN_ID=found[2])
        ran.append(command)
    assert any("logs TASK_ID --follow" in c for c in ran) and any(" run " in c for c in ran)
    assert len(ran) >= 6


def test_the_readme_spec_is_a_valid_task_spec() -> None:
    block = re.search(r"A task spec \(`spec.yaml`\):\n\n```yaml\n(.*?)```", README, re.DOTALL)
    assert block is not None
    spec = TaskSpec.model_validate(yaml.safe_load(block[1]))
    assert spec.command == ["python", "train.py"] and spec.resources.gpu == 1
