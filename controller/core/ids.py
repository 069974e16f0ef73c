"""Identifiers: sortable by creation time, readable in logs (run_..., task_...)."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    millis = int(time.time() * 1000)
    return f"{prefix}_{millis:012x}{os.urandom(5).hex()}"
