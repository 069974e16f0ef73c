"""Smoke test of the real OCI registry that deploy/local/registry runs (CNCF distribution)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.registry, pytest.mark.timeout(900)]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        body = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return gzip.compress(buf.getvalue(), mtime=0)


def _push_blob(http: httpx.Client, repo: str, data: bytes) -> str:
    digest = _digest(data)
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = start.headers["Location"]  # carries the upload's signed state: keep its query
    sep = "&" if "?" in location else "?"
    done = http.put(f"{location}{sep}digest={digest}", content=data)
    assert done.status_code == 201, done.text
    return digest


def _push_image(http: httpx.Client, repo: str, tag: str, text: str) -> tuple[str, bytes]:
    layer = _layer(text)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _push_blob(http, repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _push_blob(http, repo, layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    put = http.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": MANIFEST}
    )
    assert put.status_code == 201, put.text
    return put.headers["Docker-Content-Digest"], layer


@pytest.fixture
def http(registry: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=registry["TRACECTL_REGISTRY_URL"], timeout=30)


def test_env_names_a_plain_http_registry_on_loopback(registry: dict[str, str]) -> None:
    assert registry["TRACECTL_REGISTRY_URL"] == f"http://{registry['TRACECTL_REGISTRY']}"
    assert registry["TRACECTL_REGISTRY"].startswith("127.0.0.1:")


def test_the_api_root_answers_with_the_distribution_version_header(http: httpx.Client) -> None:
    root = http.get("/v2/")
    assert root.status_code == 200
    assert root.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_a_pushed_image_resolves_from_its_tag_to_the_digest_of_its_manifest(
    http: httpx.Client,
) -> None:
    repo = f"smoke/img-{uuid.uuid4().hex[:8]}"
    digest, layer = _push_image(http, repo, "v1", "first")
    head = http.head(f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST})
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    by_digest = http.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": MANIFEST})
    assert _digest(by_digest.content) == digest
    blob = http.get(f"/v2/{repo}/blobs/{_digest(layer)}", follow_redirects=True)
    assert blob.content == layer
    assert http.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]


def test_retagging_moves_the_tag_but_the_old_digest_still_serves(http: httpx.Client) -> None:
    repo = f"smoke/img-{uuid.uuid4().hex[:8]}"
    first, _ = _push_image(http, repo, "latest", "first")
    second, _ = _push_image(http, repo, "latest", "second")
    assert first != second
    head = http.head(f"/v2/{repo}/manifests/latest", headers={"Accept": MANIFEST})
    assert head.headers["Docker-Content-Digest"] == second
    assert http.head(f"/v2/{repo}/manifests/{first}", headers={"Accept": MANIFEST}).is_success


def test_an_unknown_tag_is_answered_404_manifest_unknown(http: httpx.Client) -> None:
    missing = http.get(f"/v2/smoke/absent-{uuid.uuid4().hex[:8]}/manifests/v1")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] in {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}


def test_a_deleted_manifest_no_longer_resolves(http: httpx.Client) -> None:
    repo = f"smoke/img-{uuid.uuid4().hex[:8]}"
    digest, _ = _push_image(http, repo, "v1", "gone")
    assert http.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202
    assert http.head(f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST}).status_code == 404
