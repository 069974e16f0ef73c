"""DVC data pulled at the revision its spec names (`data.rev`), not at the code's commit."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.runtime import code, data


def fetch(
    repo: str,
    code_commit: str | None,
    entries: list[dict[str, Any]],
    src: Path,
    scratch: Path,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Pull each entry (path, md5, rev) into SRC as DVC recorded it at its rev; return the
    entries with the DVC remote they came from.

    Data at the code's commit is pulled in SRC itself. Data at another rev is pulled in a
    checkout of that rev under SCRATCH and copied into SRC: the .dvc files in SRC are the
    code commit's, so a pull there would fetch (and check) the wrong version.
    """
    by_rev: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:  # a launch from before revs were recorded: the code's commit
        by_rev.setdefault(entry.get("rev") or code_commit or "", []).append(entry)
    fetched: list[dict[str, Any]] = []
    for rev, group in by_rev.items():
        where = src
        if rev and rev != code_commit:
            where = scratch / rev
            say(f"checking out {repo} at {rev} for its data")
            code.checkout(repo, rev, where)
        paths = [e["path"] for e in group]
        say(f"dvc pull {' '.join(paths)} at {rev[:12]}")
        data.pull(where, paths)
        remote = data.remote_url(where)
        for entry in group:
            _check(where / entry["path"], entry)
            if where != src:
                _place(where / entry["path"], src / entry["path"])
            fetched.append({**entry, "remote": remote})
    return fetched


def _check(target: Path, entry: dict[str, Any]) -> None:
    if target.is_file() and (got := data.file_md5(target)) != entry["md5"]:
        raise data.DataError(
            f"{entry['path']}: pulled md5 {got} != recorded {entry['md5']} "
            f"(rev {str(entry.get('rev'))[:12]})"
        )


def _place(source: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest)
    else:
        shutil.copy2(source, dest)
