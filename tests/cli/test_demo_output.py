"""Item 8 of issue 19: `tracectl demo` prints what the user needs and nothing else: no DVC or
MLflow chatter, no source locations, each task's metrics, hashes whole on one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(900)  # the whole demo: three tasks, one of them training
def test_the_demo_output_is_quiet_and_shows_metrics_and_whole_hashes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COLUMNS": "80",  # a fresh MLflow store: its "creating tables" case
        "TRACECTL_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli.main",
            "demo",
            "--home",
            str(tmp_path / "home"),
            "--n-estimators",
            "10",
            "--max-depth",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    assert "To track the changes with git" not in printed
    assert "Creating initial MLflow database tables" not in printed
    assert not re.search(r"\b\w+\.py:\d+\s*$", printed, re.MULTILINE)  # rich's log locations
    metrics = [line for line in printed.splitlines() if "metrics " in line]
    assert any("accuracy=" in line for line in metrics), printed
    outputs = re.findall(r"(\S+) sha256:([0-9a-f]+) \(\d+ bytes\)", printed)
    assert {path for path, _ in outputs} >= {
        "prepared/train.csv",
        "model/model.pkl",
        "metrics.json",
    }
    assert all(len(digest) == 64 for _, digest in outputs)
    assert re.search(r"verified (\d+)/\1 output hashes", printed), printed
