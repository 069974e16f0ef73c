"""Git: resolve a ref to a commit at submit time, check it out at run time (GitPython)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import git

_SHA = re.compile(r"^[0-9a-f]{40}$")


class CodeError(ValueError):
    """The code reference cannot be used; the message names what is wrong."""


@dataclass(frozen=True)
class ResolvedCode:
    repo: str
    ref: str
    commit: str
    dirty: bool


def check_allowed(repo: str, schemes: set[str], hosts: set[str]) -> None:
    """Refuse a relative local path, and repository URLs outside the configured schemes and
    hosts.

    The controller clones what it is given, so an unrestricted URL would let a caller make it
    fetch from any address it can reach.
    """
    if _is_local(repo) and not Path(repo).expanduser().is_absolute():
        # resolved here against the controller's own working directory, checked out elsewhere
        raise CodeError(
            f"git repository {repo!r} is a relative path, which the controller cannot read as "
            "you mean it: give an absolute path (e.g. $PWD) or a URL"
        )
    if _is_local(repo) or repo.startswith("file://"):
        return
    if match := re.match(r"^[\w.-]+@([\w.-]+):", repo):  # scp-like ssh
        scheme, host = "ssh", match.group(1)
    else:
        parsed = urlparse(repo)
        scheme, host = parsed.scheme, parsed.hostname or ""
    if scheme not in schemes:
        raise CodeError(f"git URL scheme {scheme!r} is not allowed (allowed: {sorted(schemes)})")
    if host not in hosts:
        raise CodeError(f"git host {host!r} is not allowed; set TRACECTL_GIT_ALLOWED_HOSTS")


def _is_local(repo: str) -> bool:
    return "://" not in repo and not re.match(r"^[\w.-]+@[\w.-]+:", repo)


def mirror_path(cache: Path, repo: str) -> Path:
    return cache / hashlib.sha256(repo.encode()).hexdigest()[:16]


def open_repo(repo: str, cache: Path) -> tuple[git.Repo, bool]:
    """A local repository to read refs from: the path itself, or a cached mirror of a URL.

    Returns (repo, is_source) where is_source tells whether the working tree is the user's.
    """
    if _is_local(repo):
        path = Path(repo).expanduser()
        try:
            exists = path.exists()
        except OSError as exc:  # a name over the file system's limit (ENAMETOOLONG)
            raise CodeError(f"git repository {repo!r} cannot be read: {exc.strerror}") from exc
        if not exists:
            raise CodeError(f"git repository {repo!r} does not exist")
        try:
            return git.Repo(path), True
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise CodeError(f"{repo!r} is not a git repository") from exc
    mirror = mirror_path(cache, repo)
    try:
        if mirror.exists():
            mirrored = git.Repo(mirror)
            mirrored.git.fetch("--prune", "origin", "+refs/*:refs/*")
        else:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            mirrored = git.Repo.clone_from(repo, mirror, mirror=True)
    except git.GitCommandError as exc:
        raise CodeError(f"cannot fetch git repository {repo!r}: {exc.stderr.strip()}") from exc
    return mirrored, False


def resolve(repo: str, ref: str, cache: Path) -> ResolvedCode:
    handle, is_source = open_repo(repo, cache)
    try:
        # rev-parse --verify checks the object exists; Repo.commit() alone would not.
        commit = handle.git.rev_parse("--verify", "--end-of-options", f"{ref}^{{commit}}")
    except (git.BadName, ValueError, git.GitCommandError) as exc:
        raise CodeError(f"git ref {ref!r} does not exist in {repo!r}") from exc
    dirty = bool(is_source and not handle.bare and handle.is_dirty(untracked_files=False))
    return ResolvedCode(repo=repo, ref=ref, commit=commit, dirty=dirty)


def read_file_at(repo: str, commit: str, path: str, cache: Path) -> bytes | None:
    """The bytes of PATH in the tree of COMMIT, or None when the tree has no such file."""
    handle, _ = open_repo(repo, cache)
    try:
        blob = handle.commit(commit).tree / path
    except KeyError:
        return None
    data: bytes = blob.data_stream.read()
    return data


def checkout(repo: str, commit: str, dest: Path) -> None:
    """A fresh clone of REPO with COMMIT checked out (detached) in DEST."""
    if not _SHA.match(commit):
        raise CodeError(f"commit {commit!r} is not a full sha")
    source = str(Path(repo).expanduser().resolve()) if _is_local(repo) else repo
    try:
        cloned = git.Repo.clone_from(source, dest, no_checkout=True)
        cloned.git.checkout("--detach", commit)
    except git.GitCommandError as exc:
        raise CodeError(f"cannot check out {commit} of {repo!r}: {exc.stderr.strip()}") from exc
    if cloned.head.commit.hexsha != commit:
        raise CodeError(f"checked out {cloned.head.commit.hexsha}, expected {commit}")
