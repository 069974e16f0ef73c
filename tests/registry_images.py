"""Images pushed to the real registry (deploy/local/registry) without Docker: umoci + skopeo.

Each image is an OCI layout made with umoci (one config label, so each push is a new manifest),
copied to the registry with skopeo, which prints the digest the registry stores it under.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx


def push(
    registry: str,
    repository: str,
    tag: str,
    work: Path,
    label: str | None = None,
    layer: Path | None = None,
    creds: str | None = None,
) -> str:
    """Push a small image to REGISTRY (host:port) as REPOSITORY:TAG; return its digest.
    LAYER, a folder, becomes the image's one layer (its files at the root); CREDS, user:password."""
    layout = work / f"oci-{uuid.uuid4().hex[:8]}"
    image = f"{layout}:{tag}"
    steps = [
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", image],
        ["umoci", "config", "--image", image, "--config.label", f"test={label or uuid.uuid4()}"],
    ]
    if layer is not None:
        tar = work / f"{layout.name}.tar"
        steps.append(["tar", "-C", str(layer), "-cf", str(tar), "."])
        steps.append(["umoci", "raw", "add-layer", "--image", image, str(tar)])
    for argv in steps:
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    digest_file = work / f"{layout.name}.digest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            *(["--dest-creds", creds] if creds else []),
            "--digestfile",
            str(digest_file),
            f"oci:{image}",
            f"docker://{registry}/{repository}:{tag}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return digest_file.read_text().strip()


def delete(registry: str, repository: str, digest: str) -> None:
    """Delete a manifest through the registry API (the registry has deletes enabled)."""
    response = httpx.delete(f"http://{registry}/v2/{repository}/manifests/{digest}", timeout=30)
    assert response.status_code == 202, response.text


def unique_repository(prefix: str = "tracectl-test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


PROGRAM = """package main

import (
	"os"
	"time"
)

// eat: take memory until the kernel kills the process; anything else: sleep an hour.
func main() {
	if len(os.Args) > 1 && os.Args[1] == "eat" {
		var kept [][]byte
		for {
			chunk := make([]byte, 8<<20)
			for i := range chunk {
				chunk[i] = 1
			}
			kept = append(kept, chunk)
		}
	}
	time.Sleep(time.Hour)
}
"""


def static_program(work: Path) -> Path:
    """A folder holding /eat: a static Go program (no libc in the image) that eats memory
    (`/eat eat`) or sleeps (`/eat`), for pods that must fail in a given way on a real node."""
    source = work / "eat-src"
    source.mkdir(exist_ok=True)
    (source / "main.go").write_text(PROGRAM)
    root = work / "eat-root"
    root.mkdir(exist_ok=True)
    subprocess.run(
        ["go", "build", "-o", str(root / "eat"), "main.go"],
        cwd=source,
        env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root
