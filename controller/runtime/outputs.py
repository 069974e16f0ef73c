"""Input artifacts placed into a workspace, and declared outputs hashed and stored."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from controller.archive.local import sha256_file
from controller.ports import ArtifactStore


class OutputError(RuntimeError):
    pass


def confined(root: Path, relative: str) -> Path:
    """ROOT/RELATIVE, refusing anything (symlinks included) that resolves outside ROOT."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise OutputError(f"path {relative!r} resolves outside the workspace")
    return target


def place_inputs(store: ArtifactStore, inputs: list[dict[str, Any]], root: Path) -> None:
    for item in inputs:
        dest = confined(root, item["path"])
        store.get_file(item["uri"], dest)
        got = sha256_file(dest)
        if got != item["sha256"]:
            raise OutputError(f"input {item['path']}: sha256 {got} != expected {item['sha256']}")


def collect_outputs(store: ArtifactStore, root: Path, declared: list[str]) -> list[dict[str, Any]]:
    root = root.resolve()
    outputs: list[dict[str, Any]] = []
    for relative in declared:
        target = confined(root, relative)
        if not target.exists():
            raise OutputError(f"declared output {relative!r} was not produced")
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for path in files:
            confined(root, str(path.relative_to(root)))
            stored = store.put_file(path)
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            outputs.append(
                {
                    "path": str(path.relative_to(root)),
                    "sha256": stored.sha256,
                    "size": stored.size,
                    "uri": stored.uri,
                    "media_type": media_type,
                }
            )
    return outputs
