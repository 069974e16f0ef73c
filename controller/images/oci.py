"""Write an OCI image layout (layers, config, manifest, index) from folders, byte-reproducibly."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
# Folders the runtime mounts over: their contents (device nodes, /proc) never go in a layer.
SKIPPED_CONTENTS = (
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
)


class Layer(BaseModel):
    """One written layer: the compressed blob's digest and the uncompressed tar's (diff id)."""

    digest: str
    diff_id: str
    size: int


class ImageConfig(BaseModel):
    """The parts of the OCI image config a task image sets."""

    env: list[str] = Field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    working_dir: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _entries(root: Path) -> Iterator[Path]:
    """Every path under ROOT in sorted order (so two builds write the same tar)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.as_posix() in SKIPPED_CONTENTS:
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            yield Path(dirpath, name)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0  # reproducible: the same files give the same digest
    info.uname = info.gname = ""
    return info


def write_tar(root: Path, out: Path) -> None:
    """An uncompressed layer tar of ROOT's contents (paths relative to ROOT)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _entries(root):
            tar.add(
                path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=_normalised
            )


def add_layer(layout: Path, root: Path) -> Layer:
    """Pack ROOT as a gzip layer blob of LAYOUT."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    raw, packed = blobs / ".layer.tar", blobs / ".layer.tar.gz"
    write_tar(root, raw)
    diff_id = sha256_of(raw)
    with raw.open("rb") as src, gzip.GzipFile(packed, "wb", compresslevel=3, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    raw.unlink()
    digest = sha256_of(packed)
    packed.rename(blobs / digest.removeprefix("sha256:"))
    return Layer(digest=digest, diff_id=diff_id, size=(blobs / digest[7:]).stat().st_size)


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return digest, len(data)


def _config_json(layers: list[Layer], config: ImageConfig) -> bytes:
    body: dict[str, object] = {"Env": config.env}
    for key, value in (
        ("Entrypoint", config.entrypoint),
        ("Cmd", config.cmd),
        ("User", config.user),
        ("WorkingDir", config.working_dir),
    ):
        if value is not None:
            body[key] = value
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": body,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_image(layout: Path, layers: list[Layer], config: ImageConfig, tag: str) -> str:
    """Config, manifest and index.json (ref TAG) for LAYERS; returns the manifest digest."""
    config_digest, config_size = _blob(layout, _config_json(layers, config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    digest, size = _blob(layout, json.dumps(manifest, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return digest
