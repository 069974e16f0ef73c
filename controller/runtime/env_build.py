"""Builds task environments with uv into a content-addressed cache, once per key.

Layout under the cache root: `<key>/` is a finished (relocatable) virtualenv with
`tracectl-env.json` inside, `<key>.lock` its lock file, `.tmp-<key>-<pid>/` a build in
progress. A build happens in the temp folder and is renamed into place only when complete,
so a failed or killed build leaves nothing a task could pick up. A task holds a shared lock
on `<key>.lock` while it runs; a build holds it exclusively, and so does collect(), which
therefore never removes an environment in use.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from controller.domain.environments import BuiltEnvironment, ResolvedEnvironment

META = "tracectl-env.json"
LAST_USED = "tracectl-last-used"
STALE_TMP_S = 3600.0

Say = Callable[[str], None]


class EnvironmentBuildError(RuntimeError):
    """The environment could not be built; the message starts with `environment:`."""


class KeyLock:
    """A flock on `<key>.lock`: shared while a task uses the environment, exclusive to build."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def shared(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def exclusive(self, wait: bool = True) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        os.close(self.fd)  # closing drops the lock


def uv_binary() -> str:
    """The uv installed with tracectl (a dependency: beside this interpreter), else PATH's."""
    import sys

    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise EnvironmentBuildError(
            "environment: could not install: uv is not installed "
            "(pip install uv, or put it on PATH)"
        )
    return found


def acquire(
    resolved: ResolvedEnvironment, src: Path, root: Path, say: Say
) -> tuple[BuiltEnvironment, KeyLock]:
    """The environment of RESOLVED, built if missing; the returned lock keeps it in use."""
    started = time.monotonic()
    lock = KeyLock(root / f"{resolved.key}.lock")
    lock.shared()
    target = root / resolved.key
    built = False
    if not (target / META).exists():
        lock.exclusive()  # converting drops the shared lock first: no deadlock between twins
        try:
            if not (target / META).exists():  # a twin may have built it meanwhile
                _build(resolved, src, root, say)
                built = True
        except BaseException:
            lock.release()
            raise
        lock.shared()
    (target / LAST_USED).touch()
    env = BuiltEnvironment.model_validate_json((target / META).read_text())
    return env.model_copy(
        update={"built": built, "seconds": time.monotonic() - started, "prefix": str(target)}
    ), lock


def _build(resolved: ResolvedEnvironment, src: Path, root: Path, say: Say) -> None:
    for stale in root.glob(f".tmp-{resolved.key}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # a killed build's leftovers
    tmp = root / f".tmp-{resolved.key}-{os.getpid()}"
    say(f"building environment env:{resolved.key[:16]}… ({_what(resolved)})")
    try:
        _create(resolved, src, tmp)
        packages = _freeze(tmp)
        meta = BuiltEnvironment(
            resolved=resolved,
            prefix=str(root / resolved.key),
            python_version=_python_version(tmp),
            packages=packages,
            packages_sha256=hashlib.sha256("\n".join(packages).encode()).hexdigest(),
        )
        (tmp / META).write_text(meta.model_dump_json(indent=2))
        tmp.rename(root / resolved.key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _what(resolved: ResolvedEnvironment) -> str:
    if resolved.kind == "bare":
        return f"bare python {resolved.python}"
    return f"{resolved.path}, python {resolved.python}"


def _create(resolved: ResolvedEnvironment, src: Path, tmp: Path) -> None:
    python = resolved.python or ""
    _uv(["venv", "--relocatable", "--python", python, str(tmp)], src, f"python {python}")
    if resolved.kind == "bare":
        return
    assert resolved.path is not None
    source = (src / resolved.path).resolve()
    if not source.is_file():
        raise EnvironmentBuildError(
            f"environment: could not install {resolved.path}: the file is not in the checkout"
        )
    requirements = source
    if resolved.kind == "uv_lock":
        requirements = tmp / "tracectl-requirements.txt"
        _uv(
            [
                "export",
                "--frozen",
                "--no-emit-project",
                "--format",
                "requirements.txt",
                "--project",
                str(source.parent),
                "--output-file",
                str(requirements),
            ],
            src,
            resolved.path,
        )
    _uv(
        ["pip", "install", "--python", str(tmp / "bin" / "python"), "-r", str(requirements)],
        src,
        resolved.path,
    )


def _uv(args: list[str], cwd: Path, what: str) -> str:
    skip = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")  # the controller's, not the task's
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env["UV_NO_PROGRESS"] = "1"
    done = subprocess.run(
        [uv_binary(), "--quiet", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"uv exited with {done.returncode}"
        raise EnvironmentBuildError(f"environment: could not install {what}: {message}")
    return done.stdout


def _freeze(prefix: Path) -> list[str]:
    out = _uv(["pip", "freeze", "--python", str(prefix / "bin" / "python")], prefix, "freeze")
    return sorted((line.strip() for line in out.splitlines() if "==" in line), key=str.lower)


def _python_version(prefix: Path) -> str:
    for line in (prefix / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version_info", "version"):
            return value.strip()
    return ""


def collect(root: Path, max_age_s: float, max_bytes: int, now: float | None = None) -> list[str]:
    """Remove environments unused for MAX_AGE_S, then the least recently used past MAX_BYTES.

    One in use (a task holds its shared lock) or being built is skipped. Returns the keys
    removed.
    """
    now = time.time() if now is None else now
    for stale in root.glob(".tmp-*"):
        if now - stale.stat().st_mtime > STALE_TMP_S:
            shutil.rmtree(stale, ignore_errors=True)
    envs = (
        sorted(((_last_used(p), p) for p in root.iterdir() if (p / META).exists()), reverse=True)
        if root.exists()
        else []
    )
    removed, total = [], 0
    for used, path in envs:  # newest first: the oldest are over the size limit
        size = _size(path)
        if now - used <= max_age_s and total + size <= max_bytes:
            total += size
            continue
        if _remove_unused(root, path):
            removed.append(path.name)
        else:
            total += size
    return removed


def _last_used(path: Path) -> float:
    marker = path / LAST_USED
    return (marker if marker.exists() else path).stat().st_mtime


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _remove_unused(root: Path, path: Path) -> bool:
    lock = KeyLock(root / f"{path.name}.lock")
    try:
        if not lock.exclusive(wait=False):
            return False
        doomed = Path(tempfile.mkdtemp(prefix=".gc-", dir=root))
        path.rename(doomed / path.name)  # gone from the key at once, then deleted
        shutil.rmtree(doomed, ignore_errors=True)
        return True
    finally:
        lock.release()
