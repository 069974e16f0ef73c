"""The "machine" block of every bench's JSON: what the figures were measured on, and how busy."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load() -> list[float]:
    """The load averages over 1, 5 and 15 minutes, now: a bench takes them as it starts."""
    return [round(x, 2) for x in os.getloadavg()]


def _git(*argv: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *argv], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()


def commit() -> str:
    """The checkout's commit (short), with ``+dirty`` where tracked files changed since."""
    try:
        head, changed = _git("rev-parse", "--short", "HEAD"), _git("status", "--porcelain", "-uno")
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return head + ("+dirty" if changed else "")


def machine(load_at_start: list[float]) -> dict[str, Any]:
    """The block: cpus, processor, python, platform, git commit, and the load averages (1, 5,
    15 min) at the start (LOAD_AT_START, from `load()`) and at the end (now)."""
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit(),
        "load_avg_start": load_at_start,
        "load_avg_end": load(),
    }
