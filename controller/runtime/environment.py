"""What the local executor records as a task's 'image': interpreter and installed packages."""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import metadata
from typing import Any


def pip_freeze() -> list[str]:
    names = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    return sorted(names, key=str.lower)


def describe() -> dict[str, Any]:
    frozen = pip_freeze()
    return {
        "interpreter": sys.executable,
        "python_version": platform.python_version(),
        "pip_freeze_sha256": hashlib.sha256("\n".join(frozen).encode()).hexdigest(),
        "packages": len(frozen),
    }
