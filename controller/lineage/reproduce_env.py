"""A reproduction's environment: the recorded lock file, read again at the recorded commit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from controller.runtime import code as code_refs
from controller.store.schema import TaskRow

FILE_KINDS = ("uv_lock", "requirements", "pyproject")


def pinned_environment(recorded: dict[str, Any]) -> dict[str, Any] | None:
    """The environment spec that resolves to RECORDED again (declared, not detected)."""
    kind = recorded.get("kind")
    if kind == "image":
        return {"image": recorded.get("image")}
    if kind in FILE_KINDS:
        return {"python": recorded.get("python"), kind: recorded.get("path")}
    if kind == "bare":
        return {"python": recorded.get("python")}
    return None  # resolved before environments were recorded


def environment_problems(task: TaskRow, cache: Path) -> list[dict[str, Any]]:
    """The recorded lock file must still be readable at the commit, with the same sha256."""
    recorded = (task.resolved or {}).get("environment") or {}
    if recorded.get("kind") not in FILE_KINDS:
        return []
    kind, path = recorded["kind"], recorded.get("path") or ""
    loc = ["tasks", task.name, "environment", kind]
    repo, commit = (task.spec.get("code") or {}).get("repo"), (task.resolved or {}).get("commit")
    body = None
    if repo and commit:
        try:
            body = code_refs.read_file_at(repo, commit, path, cache)
        except (code_refs.CodeError, ValueError, OSError):
            body = None
    if body is None:
        return [
            {
                "loc": loc,
                "msg": f"environment file {path} of task {task.name!r} cannot be "
                f"retrieved at commit {str(commit)[:12]}",
            }
        ]
    got = hashlib.sha256(body).hexdigest()
    if got != recorded.get("lock_sha256"):
        return [
            {
                "loc": loc,
                "msg": f"environment file {path} now has sha256 {got}, not the "
                f"recorded {recorded.get('lock_sha256')}",
            }
        ]
    return []
