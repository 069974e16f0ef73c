"""Resource limits for a local task process, where the OS allows them."""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable


def preexec(memory_bytes: int | None, cpu: float | None) -> Callable[[], None]:
    def apply() -> None:
        if memory_bytes:
            # Address-space limit: the closest portable stand-in for a memory limit.
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if cpu and hasattr(os, "sched_setaffinity"):
            available = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, available[: max(1, math.ceil(cpu))])

    return apply
