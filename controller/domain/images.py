"""Container image references: parsed once, and the digest a tag was pinned to at submit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

DOCKER_HUB = "docker.io"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class RegistryError(Exception):
    """The registry could not be asked: down, credentials refused, or an answer not understood."""


@dataclass(frozen=True)
class ImageRef:
    """`[host[:port]/]path[:tag][@digest]`, as Docker and containerd read it."""

    name: str  # as written, without tag or digest
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        rest, _, digest = text.partition("@")
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        name, tag = (rest[:colon], rest[colon + 1 :]) if colon > slash else (rest, None)
        ref = cls(name, tag, digest or None)
        if not _PATH.match(ref.path):
            raise ValueError(f"{text!r} is not an image reference: bad repository {ref.path!r}")
        if tag is not None and not _TAG.match(tag):
            raise ValueError(f"{text!r} is not an image reference: bad tag {tag!r}")
        if digest and not _DIGEST.match(digest):
            raise ValueError(f"{text!r} is not an image reference: bad digest {digest!r}")
        return ref

    @property
    def _split(self) -> tuple[str, str]:
        first, sep, rest = self.name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return first, rest
        return DOCKER_HUB, self.name

    @property
    def host(self) -> str:
        """The registry's host[:port] (docker.io when the reference names none)."""
        return self._split[0]

    @property
    def path(self) -> str:
        return self._split[1]

    @property
    def repository(self) -> str:
        """The repository as the registry API names it (Docker Hub's `library/` added)."""
        path = self.path
        return f"library/{path}" if self.host == DOCKER_HUB and "/" not in path else path

    @property
    def reference(self) -> str:
        """What the manifest is asked for by: the digest, else the tag (`latest` if none)."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> str:
        """The reference that names DIGEST and nothing that can move."""
        return f"{self.name}@{digest}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.name}{tag}" + (f"@{self.digest}" if self.digest else "")


class ResolvedImage(BaseModel):
    """What submit recorded of a task's image: as asked for, and the digest it named then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requested: str
    digest: str
    pinned: str  # name@sha256:...: what the task record, lineage, passport and Job use
