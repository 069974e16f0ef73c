"""A task's environment as resolved at submit and as built at run time (docs/environments.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

EnvKind = Literal["uv_lock", "requirements", "pyproject", "bare", "image"]
NODE_PREFIX = "env:"


class ResolvedEnvironment(BaseModel):
    """What the controller fixed at submit: the source file's bytes hash and the cache key."""

    kind: EnvKind
    key: str = Field(description="sha256 of (source bytes, python, platform, index settings)")
    python: str | None = None
    path: str | None = Field(default=None, description="the source file in the task's repo")
    lock_sha256: str | None = Field(default=None, description="sha256 of the source file")
    detected: bool = Field(default=False, description="found in the repo, not declared")
    image: str | None = None
    unpinned: list[str] = Field(default_factory=list, description="requirements without ==")

    @property
    def node(self) -> str:
        return f"{NODE_PREFIX}{self.key}"


class BuiltEnvironment(BaseModel):
    """What the runner used: the resolved environment plus what the build installed."""

    resolved: ResolvedEnvironment
    prefix: str = Field(description="the virtualenv's directory")
    python_version: str
    packages: list[str] = Field(default_factory=list, description="name==version, sorted")
    packages_sha256: str
    built: bool = Field(default=False, description="built by this task (False: a cache hit)")
    seconds: float = 0.0
