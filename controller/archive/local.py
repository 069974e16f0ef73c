"""The embedded default artifact store: a content-addressed folder (file:// URIs)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from controller.config import Settings
from controller.ports import StoredObject

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalArtifactStore:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.archive_dir
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"not a local artifact URI: {uri}")
        path = Path(unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact URI {uri} is outside the archive {self.root}")
        return path

    def put_file(self, path: Path, key: str | None = None) -> StoredObject:
        sha = sha256_file(path)
        target = self.root / (key or f"sha256/{sha[:2]}/{sha}")
        if not target.exists() or sha256_file(target) != sha:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target then rename: a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            os.close(fd)
            shutil.copyfile(path, tmp)
            Path(tmp).replace(target)
        return StoredObject(uri=target.resolve().as_uri(), sha256=sha, size=path.stat().st_size)

    def get_file(self, uri: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(uri), dest)

    def exists(self, uri: str) -> bool:
        try:
            return self._path(uri).exists()
        except ValueError:
            return False

    def open_bytes(self, uri: str) -> bytes:
        return self._path(uri).read_bytes()
