"""DVC: read the md5 of a tracked path at a commit, and pull it from the repo's remote."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.runtime.code import read_file_at


class DataError(ValueError):
    """A DVC path cannot be used; the message names the path and the reason."""


@dataclass(frozen=True)
class TrackedData:
    path: str
    md5: str
    rev: str


def _md5_from_dvc_file(text: bytes) -> str | None:
    doc: Any = yaml.safe_load(text)
    outs = (doc or {}).get("outs") or []
    return str(outs[0]["md5"]) if outs and "md5" in outs[0] else None


def _md5_from_lock(text: bytes, path: str) -> str | None:
    doc: Any = yaml.safe_load(text) or {}
    for stage in (doc.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == path and "md5" in out:
                return str(out["md5"])
    return None


def tracked_md5(repo: str, commit: str, path: str, cache: Path) -> str:
    """The md5 DVC recorded for PATH at COMMIT (from PATH.dvc or dvc.lock)."""
    dvc_file = read_file_at(repo, commit, f"{path}.dvc", cache)
    if dvc_file is not None:
        md5 = _md5_from_dvc_file(dvc_file)
        if md5:
            return md5
    lock = read_file_at(repo, commit, "dvc.lock", cache)
    if lock is not None:
        md5 = _md5_from_lock(lock, path)
        if md5:
            return md5
    raise DataError(f"{path!r} is not tracked by DVC at commit {commit[:12]} of {repo!r}")


def remote_url(checkout: Path) -> str | None:
    from dvc.repo import Repo

    with Repo(str(checkout)) as repo:
        config = repo.config
        name = config["core"].get("remote")
        if not name:
            return None
        url = config["remote"].get(name, {}).get("url")
        return str(url) if url else None


def file_md5(path: Path) -> str:
    """The md5 DVC gives a single file (plain md5 of its bytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pull(checkout: Path, paths: list[str]) -> None:
    """Fetch PATHS from the DVC remote into the checkout (absolute targets: see INFRA.md)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    targets = [str((checkout / p).resolve()) for p in paths]
    try:
        with Repo(str(checkout)) as repo:
            repo.pull(targets=targets)
    except DvcException as exc:
        raise DataError(f"dvc pull of {paths} failed: {exc}") from exc
    for path in paths:
        if not (checkout / path).exists():
            raise DataError(f"dvc pull did not produce {path!r}")
