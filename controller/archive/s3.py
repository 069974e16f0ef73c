"""Artifact store on S3 (any S3 API: AWS, MinIO, SeaweedFS), through the minio client.

``archive = "s3://bucket/prefix"``; endpoint and keys come from the environment
(TRACECTL_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) so that
secrets never sit in Settings, which are copied into every launch file.

Objects are content-addressed (``<prefix>/sha256/<aa>/<hex>``) unless a key is given; each
carries its sha256 as user metadata. Connection failures (S3 restarting while a task ends)
are retried with exponential backoff before the error reaches the caller.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from controller.archive.local import sha256_file
from controller.config import Settings
from controller.ports import StoredObject

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 8
FIRST_BACKOFF_S = 0.5
SHA_META = "sha256"  # stored as x-amz-meta-sha256
MISSING = {"NoSuchKey", "NoSuchObject", "NotFound"}


class S3ConfigError(ValueError):
    pass


def client_from_env() -> Minio:
    # Read from the environment, not Settings: a task's runtime archives its outputs with
    # these too, and they reach it as its environment (config.RUNTIME_ENV), never in a
    # launch document.
    endpoint = os.environ.get("TRACECTL_S3_ENDPOINT")
    if not endpoint:
        raise S3ConfigError("TRACECTL_S3_ENDPOINT is not set (e.g. http://127.0.0.1:9000)")
    url = urlparse(endpoint)
    return Minio(
        url.netloc,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        secure=url.scheme == "https",
        region=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def retrying(what: str, call: Callable[[], T]) -> T:
    """CALL, again after a backoff while S3 cannot be reached (not on S3's own refusals)."""
    delay = FIRST_BACKOFF_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except (HTTPError, OSError) as exc:
            if attempt == ATTEMPTS:
                raise
            log.warning(
                "S3 %s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, ATTEMPTS - 1, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


class S3ArtifactStore:
    def __init__(self, settings: Settings, client: Minio | None = None) -> None:
        parsed = urlparse(settings.archive)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise S3ConfigError(f"not an S3 archive URI (s3://bucket/prefix): {settings.archive!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client or client_from_env()
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return

        def make() -> None:
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        retrying(f"create bucket {self.bucket}", make)
        self._bucket_ready = True

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _object(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket:
            raise ValueError(f"artifact URI {uri} is not in bucket s3://{self.bucket}")
        return parsed.path.lstrip("/")

    def put_file(self, path: Path, key: str | None = None) -> StoredObject:
        sha = sha256_file(path)
        name = self._key(key or f"sha256/{sha[:2]}/{sha}")
        self._ensure_bucket()
        uri = f"s3://{self.bucket}/{name}"
        if key is None and self._stored_sha(name) == sha:
            return StoredObject(uri=uri, sha256=sha, size=path.stat().st_size)
        # fput_object switches to multipart above its part size; a retry re-uploads whole.
        retrying(
            f"put {uri}",
            lambda: self.client.fput_object(self.bucket, name, str(path), metadata={SHA_META: sha}),
        )
        return StoredObject(uri=uri, sha256=sha, size=path.stat().st_size)

    def _stored_sha(self, name: str) -> str | None:
        try:
            stat = retrying(f"stat {name}", lambda: self.client.stat_object(self.bucket, name))
        except S3Error as exc:
            if exc.code in MISSING:
                return None
            raise
        meta = stat.metadata or {}
        value = meta.get(f"x-amz-meta-{SHA_META}") or meta.get(f"X-Amz-Meta-{SHA_META}")
        return str(value) if value else None

    def get_file(self, uri: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        name = self._object(uri)
        retrying(f"get {uri}", lambda: self.client.fget_object(self.bucket, name, str(dest)))

    def exists(self, uri: str) -> bool:
        try:
            name = self._object(uri)
            retrying(f"stat {uri}", lambda: self.client.stat_object(self.bucket, name))
        except ValueError:
            return False
        except S3Error as exc:
            if exc.code in MISSING:
                return False
            raise
        return True

    def open_bytes(self, uri: str) -> bytes:
        name = self._object(uri)

        def read() -> bytes:
            response = self.client.get_object(self.bucket, name)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return retrying(f"get {uri}", read)

    def sha256_of(self, uri: str) -> str | None:
        """The sha256 recorded on the object at upload (None for objects stored elsewise)."""
        return self._stored_sha(self._object(uri))
