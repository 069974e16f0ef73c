"""docs/user-guide.md: its walk-through runs end to end from its own code blocks, and its task
spec reference is the one the pydantic models generate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controller.domain import spec_reference
from tests.server_process import ServerProcess

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
BLOCK = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```", re.MULTILINE | re.DOTALL)


def walkthrough() -> tuple[dict[str, str], str]:
    """The files the walk-through writes, and its shell commands as one script."""
    text = GUIDE.read_text()
    start = text.index("## Walk-through")
    section = text[start : text.index("\n## ", start + 1)]
    files: dict[str, str] = {}
    commands = []
    for lang, path, body in BLOCK.findall(section):
        if path:
            files[path] = body
        elif lang == "bash":
            commands.append(body)
    return files, "".join(commands)


@pytest.mark.timeout(900)  # two pipeline runs on two shared cores
def test_the_walkthrough_runs_end_to_end_from_its_code_blocks(
    controller: ServerProcess, tmp_path: Path
) -> None:
    files, script = walkthrough()
    assert {"sensors/clean.py", "sensors/summarize.py", "sensors/pipeline.yaml"} <= set(files)
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    env = {
        **os.environ,
        "TRACECTL_URL": controller.url,
        "COLUMNS": "80",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    assert re.search(r"run run_\w+: succeeded \(2/2 tasks done\)", printed), printed
    assert '"count": 4' in printed  # summarize's log
    assert re.search(r"summary\.json sha256:[0-9a-f]{64} ", printed)
    assert '"used_by"' in printed  # the lookup by a short commit found the tasks
    assert "no readings left after cleaning" in printed  # the failure, shown by tracectl run
    assert "tracectl logs task_" in printed


def test_the_spec_reference_is_current() -> None:
    assert spec_reference.current(GUIDE.read_text()) == spec_reference.render(), (
        "docs/user-guide.md is stale: python -m controller.domain.spec_reference --write"
    )
