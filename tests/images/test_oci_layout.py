"""The OCI layout writer: reproducible layers, a config whose diff ids match the layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

from controller.images.build import RUNTIME_EXTRAS
from controller.images.oci import ImageConfig, add_layer, write_image

REPO = Path(__file__).resolve().parents[2]


def make_root(root: Path) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "usr" / "bin" / "tool", 0o755)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("x\n")
    os.symlink("usr/bin", root / "bin")
    (root / "proc" / "self").mkdir(parents=True)  # contents of /proc never go in a layer
    (root / "proc" / "self" / "status").write_text("host's\n")
    return root


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def test_the_same_folder_packs_to_the_same_digest_twice(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    first = add_layer(tmp_path / "a", root)
    os.utime(root / "etc" / "hostname", (1, 1))  # times do not change the digest
    second = add_layer(tmp_path / "b", root)
    assert first == second
    (root / "etc" / "hostname").write_text("y\n")
    assert add_layer(tmp_path / "c", root).digest != first.digest


def test_a_layer_keeps_modes_and_links_and_leaves_out_proc(tmp_path: Path) -> None:
    layout = tmp_path / "oci"
    layer = add_layer(layout, make_root(tmp_path / "root"))
    raw = gzip.decompress(blob(layout, layer.digest))
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["usr/bin/tool"].mode & 0o777 == 0o755
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert "proc" in members and not any(name.startswith("proc/") for name in members)


def test_the_manifest_names_the_config_whose_diff_ids_are_the_layers(tmp_path: Path) -> None:
    layout = tmp_path / "oci"
    layer = add_layer(layout, make_root(tmp_path / "root"))
    digest = write_image(layout, [layer], ImageConfig(env=["A=1"], user="10001:10001"), "v1")
    manifest = json.loads(blob(layout, digest))
    assert manifest["layers"][0]["digest"] == layer.digest
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer.diff_id]
    assert config["config"] == {"Env": ["A=1"], "User": "10001:10001"}
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"


def test_the_runtime_layer_installs_the_extras_the_dockerfile_installs() -> None:
    dockerfile = (REPO / "deploy" / "k8s" / "Dockerfile").read_text()
    export = dockerfile[: dockerfile.index("-o /dist/runtime-requirements.txt")]
    export = export[export.rindex("uv export") :]
    assert tuple(re.findall(r"--extra (\w+)", export)) == RUNTIME_EXTRAS
