"""Build the task runtime image (Debian + Python + tracectl) without Docker and push it.

Layers, each cached by content under the cache folder:
  base      debootstrap --variant=minbase bookworm with python3, git, ssh client, CA certificates
  runtime   what deploy/k8s/Dockerfile's `runtime` stage installs: the locked requirements of
            the same extras and the tracectl wheel, in /usr/local; the tracectl user (10001)
  env       optional: a task environment, in /usr/local: a requirements file, or a uv.lock
            (its pyproject.toml beside it) exported to one
  server    target `controller` only: what the Dockerfile's `controller` stage adds to runtime
            (the locked distributions of the `postgres` and `oidc` extras that runtime lacks)
The layout is pushed with skopeo; the registry's manifest digest is the result.

Every layer carries its modules' bytecode, hash-based and unchecked: layer entries have mtime 0,
so timestamp-checked .pyc files (Debian's own, or pip's) never match their sources and each task
start compiled the runtime from source again (~0.6 s of CPU), as a user that cannot save them.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from controller.images.oci import ImageConfig, Layer, add_layer, write_image

SUITE = "bookworm"
PYTHON = "python3.11"  # bookworm's python3
BASE_PACKAGES = "python3-minimal,python3,ca-certificates,git,openssh-client"
# The extras of deploy/k8s/Dockerfile's runtime-requirements.txt (a test checks they agree).
RUNTIME_EXTRAS = ("kubernetes", "kafka", "elasticsearch", "s3")
# The extras of the Dockerfile's controller-requirements.txt: runtime's and these.
SERVER_EXTRAS = ("postgres", "oidc")
SITE = f"usr/local/lib/{PYTHON}/dist-packages"
USER_ID = 10001
IMAGE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONUNBUFFERED=1",
    "HOME=/var/lib/tracectl",
]


class ImageBuildError(RuntimeError):
    """A step failed; the message says which and what to do."""


class BuildRequest(BaseModel):
    """What `tracectl image build` was asked for."""

    registry: str  # host:port, plain HTTP
    repository: str = "tracectl/runtime"
    tag: str = "0.1.0"
    source: Path  # the repository root: pyproject.toml, uv.lock, controller/
    cache: Path
    mirror: str = "http://deb.debian.org/debian"
    requirements: Path | None = None
    lock: Path | None = None  # a uv.lock: its export is the environment layer's requirements
    base_only: bool = False
    target: Literal["runtime", "controller"] = "runtime"  # the Dockerfile's stage of that name


class BuiltImage(BaseModel):
    """The pushed image: `registry/repository@digest`, and its layers."""

    reference: str
    digest: str
    layers: list[Layer]


def run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout)[-1500:]
        raise ImageBuildError(
            f"{what} failed (exit {out.returncode}): {' '.join(argv[:3])} ...\n{tail}"
        )
    return out.stdout


@contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache (test sessions may build concurrently)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def key_of(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def cached_layer(layout: Path, key: str, make_root: Callable[[Path], Path]) -> Layer:
    """The layer made from MAKE_ROOT(), or the one made before for the same KEY."""
    record = layout.parent / "layers" / f"{key}.json"
    if record.exists():
        layer = Layer.model_validate_json(record.read_text())
        if (layout / "blobs" / "sha256" / layer.digest[7:]).exists():
            return layer
    with tempfile.TemporaryDirectory(dir=layout.parent) as work:
        layer = add_layer(layout, make_root(Path(work)))
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(layer.model_dump_json())
    return layer


def base_rootfs(req: BuildRequest) -> Path:
    """debootstrap's minbase root filesystem, made once per suite and package list."""
    root = req.cache / f"base-{SUITE}-{key_of(BASE_PACKAGES)[:8]}"
    if (root / ".complete").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is missing: apt-get install -y debootstrap")
    tmp = root.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(tmp)]
    run([*argv, req.mirror], "debootstrap (needs root and the Debian mirror)")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (tmp / junk).glob("*"):
            if path.is_file():
                path.unlink()
    tmp.rename(root)
    (root / ".complete").touch()
    return root


def _fix_scripts(prefix: Path) -> None:
    """Console scripts name the interpreter uv ran with: point them at the image's."""
    for script in (prefix / "bin").glob("*"):
        if not script.is_file():
            continue
        lines = script.read_bytes().split(b"\n", 1)
        if lines[0].startswith(b"#!") and b"python" in lines[0]:
            script.write_bytes(b"#!/usr/bin/python3\n" + (lines[1] if len(lines) > 1 else b""))


# Folders of Python modules in the base root filesystem (Debian's own bytecode is per timestamp).
BASE_MODULES = (f"usr/lib/{PYTHON}", "usr/lib/python3/dist-packages")
BYTECODE = "unchecked-hash"  # an image never changes under its bytecode


def compile_bytecode(root: Path, folders: tuple[str, ...]) -> None:
    """.pyc files for ROOT's FOLDERS that stay valid in a layer (see the module docstring)."""
    present = [str(root / f) for f in folders if (root / f).exists()]
    argv = [PYTHON, "-m", "compileall", "-q", "-f", "-j0", "--invalidation-mode", BYTECODE]
    # Paths in tracebacks as in the image; a module that does not compile (a py2 test file in
    # a wheel) is skipped by the interpreter too, so compileall's exit code is not a failure.
    subprocess.run([*argv, "-s", str(root), "-p", "/", *present], capture_output=True, check=False)


def base_with_bytecode(base: Path) -> Path:
    """The cached base root filesystem, its modules compiled once (a marker says so)."""
    marker = base / f".bytecode-{BYTECODE}"
    if not marker.exists():
        compile_bytecode(base, BASE_MODULES)
        marker.touch()
    return base


def install_into(root: Path, requirements: Path, extra: list[str]) -> None:
    """uv pip install REQUIREMENTS (+ EXTRA) under ROOT/usr/local, laid out as Debian expects."""
    prefix = root / "usr" / "local"
    argv = ["uv", "pip", "install", "--quiet", "--python", PYTHON, "--prefix", str(prefix)]
    run([*argv, "--no-compile", "-r", str(requirements), *extra], "uv pip install")
    site = prefix / "lib" / PYTHON / "site-packages"
    if site.exists():  # Debian's python reads /usr/local/lib/python3.X/dist-packages
        site.rename(site.with_name("dist-packages"))
    _fix_scripts(prefix)
    compile_bytecode(root, (SITE,))


def runtime_root(req: BuildRequest, base: Path, work: Path) -> Path:
    """What the Dockerfile's runtime stage adds: locked requirements, the wheel, the user."""
    dist, root = work / "dist", work / "root"
    extras = [arg for name in RUNTIME_EXTRAS for arg in ("--extra", name)]
    run(["uv", "build", "--wheel", "--out-dir", str(dist)], "uv build --wheel", cwd=req.source)
    export = ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
    reqs = dist / "runtime-requirements.txt"
    run([*export, *extras, "-o", str(reqs)], "uv export", cwd=req.source)
    wheel = next(dist.glob("tracectl-*.whl"))
    install_into(root, reqs, ["--no-deps", str(wheel)])  # the export is the whole closure
    _add_user(base, root)
    return root


def _add_user(base: Path, root: Path) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    for name, line in (
        ("passwd", f"tracectl:x:{USER_ID}:{USER_ID}::/var/lib/tracectl:/bin/sh\n"),
        ("group", f"tracectl:x:{USER_ID}:\n"),
    ):
        (root / "etc" / name).write_text((base / "etc" / name).read_text() + line)
    for folder in ("var/lib/tracectl", "workspace"):
        (root / folder).mkdir(parents=True)
        shutil.chown(root / folder, USER_ID, USER_ID)
    # The executor runs `python -m controller.runtime.phases`; Debian names it python3 only.
    (root / "usr" / "local" / "bin" / "python").symlink_to("/usr/bin/python3")


def env_root(requirements: Path, work: Path) -> Path:
    root = work / "root"
    install_into(root, requirements, [])
    return root


def env_requirements(req: BuildRequest, work: Path) -> Path | None:
    """The environment layer's requirements: the file given, or the lock's `uv export`."""
    if req.lock is None:
        return req.requirements
    out = work / "env-requirements.txt"
    export = ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
    # No header: it names the output path, and the layer's key is the export's bytes.
    run([*export, "--no-header", "-o", str(out)], f"uv export of {req.lock}", cwd=req.lock.parent)
    return out


def runtime_key(req: BuildRequest) -> str:
    """The runtime layer changes with the lock file, the project metadata and the code."""
    files = [req.source / "uv.lock", req.source / "pyproject.toml"]
    files += sorted((req.source / "controller").rglob("*.py"))
    return key_of("runtime", BYTECODE, *RUNTIME_EXTRAS, *(f.read_bytes() for f in files))


def build(req: BuildRequest) -> BuiltImage:
    """Build (or reuse) each layer, write the image and push it; returns its reference."""
    layout = req.cache / "oci"
    with locked(req.cache):
        base = base_with_bytecode(base_rootfs(req))
        base_key = key_of("base", base.name, BYTECODE)
        layers = [cached_layer(layout, base_key, lambda _work: base)]
        if not req.base_only:
            make = functools.partial(runtime_root, req, base)
            layers.append(cached_layer(layout, runtime_key(req), make))
        with tempfile.TemporaryDirectory(dir=req.cache) as work:
            requirements = env_requirements(req, Path(work))
            if requirements is not None:
                make_env = functools.partial(env_root, requirements)
                key = key_of("env", BYTECODE, requirements.read_bytes())
                layers.append(cached_layer(layout, key, make_env))
        if req.target == "controller":
            layers.append(
                cached_layer(layout, server_key(req), functools.partial(server_root, req))
            )
        write_image(layout, layers, image_config(req), req.tag)
        digest = push(layout, req)
    return BuiltImage(
        reference=f"{req.registry}/{req.repository}@{digest}", digest=digest, layers=layers
    )


def image_config(req: BuildRequest) -> ImageConfig:
    """The Dockerfile's settings for the stage built: runtime's user and folder, the server's."""
    if req.base_only:
        return ImageConfig(env=IMAGE_ENV, cmd=["/usr/bin/python3"])
    if req.target == "runtime":
        user = f"{USER_ID}:{USER_ID}"
        return ImageConfig(
            env=IMAGE_ENV, cmd=["/usr/bin/python3"], user=user, working_dir="/workspace"
        )
    return ImageConfig(
        env=[*IMAGE_ENV, "TRACECTL_HOME=/var/lib/tracectl"],
        entrypoint=["/usr/local/bin/tracectl"],
        cmd=["server", "--host", "0.0.0.0", "--port", "8765"],
        user=f"{USER_ID}:{USER_ID}",
        working_dir="/var/lib/tracectl",
    )


def _export(source: Path, extras: tuple[str, ...]) -> list[str]:
    """`uv export --frozen` of the project's locked closure with EXTRAS, one line a requirement."""
    flags = [arg for name in extras for arg in ("--extra", name)]
    argv = ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", *flags]
    out = run(argv, "uv export", cwd=source)
    return [line for line in out.splitlines() if line and not line.lstrip().startswith("#")]


def server_requirements(source: Path) -> list[str]:
    """What the controller needs beyond the runtime layer (the same pins, uv.lock's)."""
    runtime = set(_export(source, RUNTIME_EXTRAS))
    return [line for line in _export(source, RUNTIME_EXTRAS + SERVER_EXTRAS) if line not in runtime]


def server_key(req: BuildRequest) -> str:
    """The server layer changes only with the pins it installs."""
    return key_of("server", *server_requirements(req.source))


def server_root(req: BuildRequest, work: Path) -> Path:
    reqs = work / "server-requirements.txt"
    reqs.write_text("\n".join(server_requirements(req.source)) + "\n")
    root = work / "root"
    install_into(root, reqs, ["--no-deps"])  # the runtime layer holds the rest of the closure
    return root


def push(layout: Path, req: BuildRequest) -> str:
    """skopeo copy to the registry; the digest it pushed."""
    if shutil.which("skopeo") is None:
        raise ImageBuildError("skopeo is missing: apt-get install -y skopeo")
    with tempfile.TemporaryDirectory() as tmp:
        digest_file = Path(tmp) / "digest"
        run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--digestfile",
                str(digest_file),
                f"oci:{layout}:{req.tag}",
                f"docker://{req.registry}/{req.repository}:{req.tag}",
            ],
            f"skopeo copy to {req.registry} (is deploy/local/registry started?)",
        )
        return digest_file.read_text().strip()


def manifest_layers(reference: str) -> list[str]:
    """The layer digests of a pushed image (skopeo inspect)."""
    raw = run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
        "skopeo inspect",
    )
    return [layer["digest"] for layer in json.loads(raw)["layers"]]
