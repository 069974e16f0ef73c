"""The in-pod runtime contract (controller.runtime.phases), run here as the pod would run it:
`prepare` then `exec` on a launch document, with a real local git repository and argv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.config import Settings, runtime_settings
from controller.domain.launch import LaunchDocument, Resolution
from controller.domain.spec import CodeRef, TaskSpec
from controller.runtime import phases


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


FIRST_ATTEMPT: dict[str, Any] = {"run_id": "run_1", "task_id": "task_1", "attempt": 1}


def write_launch(tmp_path: Path, name: str, spec: TaskSpec, resolved: Resolution) -> Path:
    """The launch file of task NAME's first attempt, as the controller writes it."""
    launch = LaunchDocument(
        **FIRST_ATTEMPT,
        task_name=name,
        spec=spec,
        resolved=resolved,
        runtime=runtime_settings(Settings(home=tmp_path / "home")),
    )
    path = tmp_path / "launch.json"
    path.write_text(launch.as_json())
    return path


def test_prepare_then_exec_writes_outputs_and_the_termination_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(
        "import os, sys\nprint('epochs', os.environ['EPOCHS'])\n"
        "assert 'AWS_SECRET_ACCESS_KEY' not in os.environ, 'the runtime keys reached the task'\n"
        "open('model.txt', 'w').write('weights')\nsys.exit(int(sys.argv[1]))\n"
    )
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    commit = git(repo, "rev-parse", "HEAD")
    spec = TaskSpec(
        command=[sys.executable, "train.py", "0"],
        outputs=["model.txt"],
        code=CodeRef(repo=str(repo)),
        params={"lr": 0.1},
    )
    launch_file = write_launch(tmp_path, "train", spec, Resolution(commit=commit))
    termination = tmp_path / "termination-log"
    monkeypatch.setattr(phases, "TERMINATION_LOG", termination)
    monkeypatch.setenv("EPOCHS", "3")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the runtime's archive key")  # from the Secret
    workspace = tmp_path / "workspace"
    assert phases.main(["prepare", str(launch_file), str(workspace)]) == 0
    assert git(workspace / "src", "rev-parse", "HEAD") == commit
    argv = [sys.executable, "train.py", "0"]
    assert phases.main(["exec", str(launch_file), str(workspace), "--", *argv]) == 0
    result = json.loads(termination.read_text())
    assert result["exit_code"] == 0
    (output,) = result["outputs"]
    assert output["path"] == "model.txt" and output["size"] == len("weights")
    assert json.loads((workspace / "params.json").read_text()) == {"lr": 0.1}
    failing = [sys.executable, "train.py", "3"]
    assert phases.main(["exec", str(launch_file), str(workspace), "--", *failing]) == 3
    assert json.loads(termination.read_text()) == {"exit_code": 3, "reason": "exited with code 3"}


def test_termination_message_fits_the_kubelet_limit() -> None:
    big = {"exit_code": 0, "outputs": [{"path": f"f{i}", "sha256": "0" * 64} for i in range(200)]}
    message = phases.termination_message(big)
    assert len(message.encode()) <= phases.TERMINATION_LIMIT
    assert json.loads(message) == {"exit_code": 0, "truncated": True}


# What a pod's Python must not load before a task with no code, data, inputs or outputs runs.
HEAVY = {"git", "pydantic_settings", "yaml", "boto3", "dvc", "kubernetes", "mlflow", "sqlalchemy"}
SETUP = {"controller.config", "controller.backends", "controller.runtime.code"}


def test_all_runs_a_bare_task_in_one_interpreter_without_the_heavy_imports(
    tmp_path: Path,
) -> None:
    """`phases all` for a task that needs no set-up loads only the launch models: the imports
    are on every pod's path to its command (bench/dispatch_real.py measures the time)."""
    launch_file = write_launch(tmp_path, "bare", TaskSpec(command=["true"]), Resolution())
    probe = (
        "import json, sys\n"
        "from controller.runtime import phases\n"
        f"phases.TERMINATION_LOG = __import__('pathlib').Path({str(tmp_path / 'term')!r})\n"
        f"code = phases.main(['all', {str(launch_file)!r}, {str(tmp_path / 'ws')!r}, '--', "
        f"{sys.executable!r}, '-c', 'print(7)'])\n"
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    code, modules = json.loads(out[-1])
    assert code == 0 and "7" in out
    assert {m.split(".")[0] for m in modules} & HEAVY == set()
    assert set(modules) & SETUP == set()
    result = json.loads((tmp_path / "term").read_text())
    assert result == {"exit_code": 0, "data": None, "outputs": []}
