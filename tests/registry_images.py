"""Images pushed to the real registry (deploy/local/registry) without Docker: umoci + skopeo.

Each image is an OCI layout made with umoci (one config label, so each push is a new manifest),
copied to the registry with skopeo, which prints the digest the registry stores it under.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx


def push(registry: str, repository: str, tag: str, work: Path, label: str | None = None) -> str:
    """Push a small image to REGISTRY (host:port) as REPOSITORY:TAG; return its digest."""
    layout = work / f"oci-{uuid.uuid4().hex[:8]}"
    image = f"{layout}:{tag}"
    for argv in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", image],
        ["umoci", "config", "--image", image, "--config.label", f"test={label or uuid.uuid4()}"],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    digest_file = work / f"{layout.name}.digest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
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
