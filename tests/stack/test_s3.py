"""Smoke test of the real S3 server that deploy/local/s3 runs (SeaweedFS or MinIO)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from minio import Minio
from minio.error import S3Error
from minio.versioningconfig import ENABLED, VersioningConfig

pytestmark = [pytest.mark.s3, pytest.mark.timeout(900)]

DVC = Path(sys.executable).with_name("dvc")


def _client(env: dict[str, str], secret: str | None = None) -> Minio:
    url = urlsplit(env["TRACECTL_S3_ENDPOINT"])
    return Minio(
        url.netloc,
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=secret if secret is not None else env["AWS_SECRET_ACCESS_KEY"],
        secure=url.scheme == "https",
        region=env.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def _remove_bucket(client: Minio, bucket: str) -> None:
    for obj in client.list_objects(bucket, recursive=True, include_version=True):
        client.remove_object(bucket, obj.object_name, version_id=obj.version_id)
    client.remove_bucket(bucket)


@pytest.fixture
def bucket(s3: dict[str, str]) -> Iterator[str]:
    client = _client(s3)
    name = f"smoke-{uuid.uuid4().hex[:16]}"
    assert not client.bucket_exists(name)
    client.make_bucket(name)
    assert client.bucket_exists(name)
    assert name in {b.name for b in client.list_buckets()}
    yield name
    _remove_bucket(client, name)


def test_env_names_loopback_endpoint_and_impl(s3: dict[str, str]) -> None:
    assert s3["TRACECTL_S3_ENDPOINT"].startswith("http://127.0.0.1:")
    assert s3["TRACECTL_S3_IMPL"] in {"seaweedfs", "minio"}
    assert s3["AWS_ACCESS_KEY_ID"]
    assert s3["AWS_SECRET_ACCESS_KEY"]


def test_default_buckets_exist(s3: dict[str, str]) -> None:
    names = {b.name for b in _client(s3).list_buckets()}
    assert {"mlflow-artifacts", "dvc"} <= names


def test_put_get_roundtrip_with_checksum(s3: dict[str, str], bucket: str) -> None:
    client = _client(s3)
    small = os.urandom(256 * 1024)
    client.put_object(bucket, "dir/small.bin", io.BytesIO(small), len(small))
    # 11 MiB with 5 MiB parts: a real multipart upload
    big = os.urandom(11 * 1024 * 1024)
    client.put_object(bucket, "dir/big.bin", io.BytesIO(big), len(big), part_size=5 * 1024 * 1024)

    for key, data in (("dir/small.bin", small), ("dir/big.bin", big)):
        resp = client.get_object(bucket, key)
        try:
            got = resp.read()
        finally:
            resp.close()
            resp.release_conn()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        assert client.stat_object(bucket, key).size == len(data)

    listed = sorted(
        o.object_name for o in client.list_objects(bucket, prefix="dir/", recursive=True)
    )
    assert listed == ["dir/big.bin", "dir/small.bin"]

    client.remove_object(bucket, "dir/small.bin")
    with pytest.raises(S3Error) as err:
        client.stat_object(bucket, "dir/small.bin")
    assert err.value.code in {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


def test_presigned_get_via_httpx(s3: dict[str, str], bucket: str) -> None:
    client = _client(s3)
    data = b"presigned " + os.urandom(1024)
    client.put_object(bucket, "pre/obj.bin", io.BytesIO(data), len(data))
    url = client.presigned_get_object(bucket, "pre/obj.bin", expires=timedelta(minutes=5))
    assert "X-Amz-Signature=" in url

    ok = httpx.get(url, timeout=10)
    assert ok.status_code == 200
    assert ok.content == data

    # the signature really is checked: a tampered one and an unsigned request are refused
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered, timeout=10).status_code == 403
    unsigned = f"{s3['TRACECTL_S3_ENDPOINT']}/{bucket}/pre/obj.bin"
    assert httpx.get(unsigned, timeout=10).status_code == 403


def test_wrong_secret_and_unknown_key_are_rejected(s3: dict[str, str], bucket: str) -> None:
    with pytest.raises(S3Error) as err:
        _client(s3, secret="not-the-secret-key").list_buckets()
    assert err.value.code == "SignatureDoesNotMatch"

    with pytest.raises(S3Error) as err:
        _client(s3, secret="not-the-secret-key").put_object(bucket, "evil.txt", io.BytesIO(b"x"), 1)
    assert err.value.code == "SignatureDoesNotMatch"
    assert [o.object_name for o in _client(s3).list_objects(bucket)] == []

    stranger = Minio(
        urlsplit(s3["TRACECTL_S3_ENDPOINT"]).netloc,
        access_key="nobody-" + uuid.uuid4().hex[:8],
        secret_key="whatever-secret",
        secure=False,
    )
    with pytest.raises(S3Error) as err:
        stranger.list_buckets()
    assert err.value.code in {"InvalidAccessKeyId", "AccessDenied"}


def test_versioning(s3: dict[str, str], bucket: str) -> None:
    client = _client(s3)
    # a bucket that was never versioned has no Status at all (as on AWS); minio-py may say "Off"
    assert client.get_bucket_versioning(bucket).status in {None, "Off"}
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    # both SeaweedFS and MinIO (single-drive xl mode) implement versioning
    assert client.get_bucket_versioning(bucket).status == "Enabled"

    first = client.put_object(bucket, "v.txt", io.BytesIO(b"one"), 3)
    second = client.put_object(bucket, "v.txt", io.BytesIO(b"two!"), 4)
    assert first.version_id and second.version_id
    assert first.version_id != second.version_id

    def read(version_id: str | None = None) -> bytes:
        resp = client.get_object(bucket, "v.txt", version_id=version_id)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    assert read() == b"two!"
    assert read(first.version_id) == b"one"
    assert read(second.version_id) == b"two!"
    versions = {
        o.version_id: str(o.is_latest).lower()
        for o in client.list_objects(bucket, prefix="v.txt", include_version=True)
    }
    assert versions == {first.version_id: "false", second.version_id: "true"}

    # deleting without a version id leaves a delete marker; the old versions stay readable
    client.remove_object(bucket, "v.txt")
    with pytest.raises(S3Error):
        client.stat_object(bucket, "v.txt")
    assert read(first.version_id) == b"one"


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_dvc_remote_push_and_pull(s3: dict[str, str], tmp_path: Path) -> None:
    assert DVC.exists(), f"dvc is not installed next to {sys.executable}"
    repo = tmp_path / "repo"
    repo.mkdir()
    # PYTHONDONTWRITEBYTECODE is set on these machines: without .pyc files each dvc command
    # compiles dvc from source again (~7 s each); let the first one cache them
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {
        "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": s3.get("AWS_DEFAULT_REGION", "us-east-1"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    prefix = f"smoke-{uuid.uuid4().hex[:12]}"
    _run(["git", "init", "-q"], repo, env)
    _run([str(DVC), "init", "-q"], repo, env)
    _run([str(DVC), "remote", "add", "-d", "store", f"s3://dvc/{prefix}"], repo, env)
    _run(
        [str(DVC), "remote", "modify", "store", "endpointurl", s3["TRACECTL_S3_ENDPOINT"]],
        repo,
        env,
    )

    data = os.urandom(300 * 1024)
    target = repo / "data.bin"
    target.write_bytes(data)
    _run([str(DVC), "add", "-q", "data.bin"], repo, env)
    assert (repo / "data.bin.dvc").exists()
    md5 = hashlib.md5(data).hexdigest()  # DVC addresses content by md5
    assert md5 in (repo / "data.bin.dvc").read_text()
    _run([str(DVC), "push", "-q"], repo, env)

    # the object really is in the bucket, under DVC's content-addressed layout
    client = _client(s3)
    keys = [o.object_name for o in client.list_objects("dvc", prefix=f"{prefix}/", recursive=True)]
    assert f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}" in keys
    try:
        shutil.rmtree(repo / ".dvc" / "cache")
        target.unlink()
        assert not target.exists()
        _run([str(DVC), "pull", "-q"], repo, env)
        assert target.read_bytes() == data
    finally:
        for key in keys:
            client.remove_object("dvc", key)
