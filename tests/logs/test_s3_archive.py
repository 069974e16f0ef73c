"""S3ArtifactStore against the real S3 server: content addressing, metadata, and an archive
that outlives S3 being restarted under it."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.archive.s3 import S3ArtifactStore
from controller.config import Settings
from tests.logs.conftest import S3_ENV, service

pytestmark = [pytest.mark.s3, pytest.mark.timeout(300)]


@pytest.fixture
def store(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3ArtifactStore]:
    for key in S3_ENV:
        if key in s3:
            monkeypatch.setenv(key, s3[key])
    bucket = f"tracectl-archive-{uuid.uuid4().hex[:8]}"  # a new bucket: created on first put
    store = S3ArtifactStore(Settings(home=tmp_path, archive=f"s3://{bucket}/pre/fix"))
    yield store
    if store.client.bucket_exists(bucket):
        for obj in store.client.list_objects(bucket, recursive=True):
            store.client.remove_object(bucket, obj.object_name)
        store.client.remove_bucket(bucket)


def test_put_get_exists_and_content_address(store: S3ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"tracectl " * 100_000)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    stored = store.put_file(path)
    assert stored.uri == f"s3://{store.bucket}/pre/fix/sha256/{sha[:2]}/{sha}"
    assert (stored.sha256, stored.size) == (sha, path.stat().st_size)
    assert store.exists(stored.uri) and store.sha256_of(stored.uri) == sha
    assert store.open_bytes(stored.uri) == path.read_bytes()
    store.get_file(stored.uri, tmp_path / "back" / "blob.bin")
    assert (tmp_path / "back" / "blob.bin").read_bytes() == path.read_bytes()
    assert not store.exists(stored.uri + "-missing")
    assert not store.exists("s3://another-bucket/x")
    keyed = store.put_file(path, key="logs/run/task/1.log.gz")
    assert keyed.uri == f"s3://{store.bucket}/pre/fix/logs/run/task/1.log.gz"


def test_put_while_s3_restarts_is_retried_then_stored(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(b"archived while S3 was down\n" * 1000)
    store.put_file(path, key="warmup")  # bucket exists before the outage
    result: dict[str, object] = {}

    def archive() -> None:
        try:
            result["stored"] = store.put_file(path, key="logs/outage/1.log.gz")
        except Exception as exc:
            result["error"] = exc

    service("s3", "stop")
    try:
        worker = threading.Thread(target=archive)
        worker.start()
        time.sleep(3)
        assert worker.is_alive(), f"gave up while S3 was down: {result}"
    finally:
        service("s3", "start")
    worker.join(timeout=120)
    assert "error" not in result, result
    stored = result["stored"]
    assert store.open_bytes(stored.uri) == path.read_bytes()  # type: ignore[attr-defined]
