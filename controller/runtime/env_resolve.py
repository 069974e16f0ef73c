"""Which environment a task runs in: declared in its spec or detected in its repo at the commit.

Runs at submit. The cache key is fixed here, from the source file's bytes, the Python
version, the platform and the package-index settings, so the same key always names the
same build (controller/runtime/env_build.py makes it).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Callable

from controller.domain.environments import ResolvedEnvironment
from controller.domain.spec import EnvironmentSpec

KEY_VERSION = 1
DETECTED = (("uv_lock", "uv.lock"), ("requirements", "requirements.txt"))
# uv and pip read these: a different index can serve different files for the same pin.
INDEX_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
)
_PINNED = re.compile(r"===?|@\s*\S+://")

Reader = Callable[[str], bytes | None]


class EnvironmentSpecError(ValueError):
    """A declared environment file is missing; `field` names the spec field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def default_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def platform_tag() -> str:
    return f"{sys.platform}-{platform.machine()}"


def index_settings() -> dict[str, str]:
    return {name: os.environ[name] for name in INDEX_VARIABLES if os.environ.get(name)}


def env_key(kind: str, source_sha256: str | None, python: str | None) -> str:
    material = {
        "v": KEY_VERSION,
        "kind": kind,
        "source": source_sha256,
        "python": python,
        "platform": platform_tag(),
        "index": index_settings(),
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def unpinned(requirements: bytes) -> list[str]:
    """Requirement lines that do not pin one version (no `==`, `===` or direct URL)."""
    found = []
    for raw in requirements.decode(errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue  # comments and options (-r, --index-url, -e ...)
        if not _PINNED.search(line):
            found.append(line)
    return found


def resolve(spec: EnvironmentSpec | None, read: Reader | None) -> ResolvedEnvironment:
    """The environment of a task; READ gives a file of its repo at the commit (None: no repo)."""
    if spec is not None and spec.image:
        digest = hashlib.sha256(spec.image.encode()).hexdigest()
        return ResolvedEnvironment(
            kind="image", key=env_key("image", digest, None), image=spec.image
        )
    python = (spec.python if spec else None) or default_python()
    declared = spec.source() if spec else None
    if declared is not None:
        kind, path = declared
        body = read(path) if read else None
        if body is None:
            raise EnvironmentSpecError(kind, f"{path} is not in the repository at this commit")
        return _from_file(kind, path, body, python, detected=False)
    for kind, path in DETECTED if read else ():
        assert read is not None
        if (body := read(path)) is not None:
            return _from_file(kind, path, body, python, detected=True)
    return ResolvedEnvironment(
        kind="bare", key=env_key("bare", None, python), python=python, detected=spec is None
    )


def _from_file(
    kind: str, path: str, body: bytes, python: str, detected: bool
) -> ResolvedEnvironment:
    digest = hashlib.sha256(body).hexdigest()
    return ResolvedEnvironment.model_validate(
        {
            "kind": kind,
            "key": env_key(kind, digest, python),
            "python": python,
            "path": path,
            "lock_sha256": digest,
            "detected": detected,
            "unpinned": unpinned(body) if kind == "requirements" else [],
        }
    )
