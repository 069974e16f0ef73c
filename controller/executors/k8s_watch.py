"""A list-then-watch cache of the objects tracectl owns, per namespace and kind.

One thread per (kind, namespace): LIST (fills the cache, gives a resourceVersion), then
WATCH from that version with bookmarks; a closed watch resumes from the last version seen;
410 Gone (the version was compacted away) re-lists. Objects are kept as the API's JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("tracectl.k8s.watch")
WATCH_TIMEOUT_S = 240
RETRY_S = 1.0

ListFn = Callable[..., Any]
Key = tuple[str, str, str]  # kind, namespace, name


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class ObjectCache:
    """Objects by (kind, namespace), with an index on their labels: the supervisor looks up
    every active attempt's pods each round, and a scan per lookup grows with the square of
    the attempts a controller follows."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._labels: dict[tuple[str, str, str, str], set[str]] = {}
        self._changed = threading.Condition()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._changed:
            return self._buckets.get((kind, namespace), {}).get(name)

    def select(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        with self._changed:
            bucket = self._buckets.get((kind, namespace), {})
            if not labels:
                return list(bucket.values())
            names = min(
                (self._labels.get((kind, namespace, k, v), set()) for k, v in labels.items()),
                key=len,
            )
            return [
                obj
                for name in sorted(names)
                if all(_labels_of(obj := bucket[name]).get(k) == v for k, v in labels.items())
            ]

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        with self._changed:
            self._put(kind, meta.get("namespace", ""), obj)
            self._changed.notify_all()

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self._changed:
            self._drop(kind, namespace, name)
            self._changed.notify_all()

    def replace(self, kind: str, namespace: str, objects: list[dict[str, Any]]) -> None:
        with self._changed:
            for name in list(self._buckets.get((kind, namespace), {})):
                self._drop(kind, namespace, name)
            for obj in objects:
                self._put(kind, namespace, obj)
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def _put(self, kind: str, namespace: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self._drop(kind, namespace, name)
        self._buckets.setdefault((kind, namespace), {})[name] = obj
        for key, value in _labels_of(obj).items():
            self._labels.setdefault((kind, namespace, key, value), set()).add(name)

    def _drop(self, kind: str, namespace: str, name: str) -> None:
        old = self._buckets.get((kind, namespace), {}).pop(name, None)
        for key, value in _labels_of(old).items() if old else ():
            names = self._labels.get((kind, namespace, key, value))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._labels[(kind, namespace, key, value)]


def _labels_of(obj: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return labels


class Informer(threading.Thread):
    """Keeps the cache's view of one kind in one namespace current."""

    def __init__(
        self,
        cache: ObjectCache,
        kind: str,
        namespace: str,
        list_fn: ListFn,
        selector: str,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"k8s-watch-{kind}-{namespace}", daemon=True)
        self.cache, self.kind, self.namespace = cache, kind, namespace
        self.list_fn, self.selector, self.stop = list_fn, selector, stop
        self.synced = threading.Event()
        self.relists = 0
        self._response: Any = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                version = self._list()
                while not self.stop.is_set():
                    version = self._watch(version)
            except Gone:
                log.info(
                    "watch of %s in %s expired (410): listing again", self.kind, self.namespace
                )
            except Exception:
                if self.stop.is_set():
                    return
                # One line per failure; the traceback only at debug level (an API server
                # restart would otherwise flood the log every RETRY_S).
                log.warning("watch of %s in %s failed; retrying", self.kind, self.namespace)
                log.debug("watch failure", exc_info=True)
                self.stop.wait(RETRY_S)

    def close(self) -> None:
        self.stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the read of a long-poll watch
            except Exception:
                response.close()

    def _list(self) -> str:
        response = self.list_fn(
            self.namespace,
            label_selector=self.selector,
            _preload_content=False,
            _request_timeout=60,
        )
        body = json.loads(response.data)
        self.cache.replace(self.kind, self.namespace, body.get("items") or [])
        self.relists += 1
        self.synced.set()
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        """Apply events from VERSION until the server closes the watch; return the last one."""
        response = self.list_fn(
            self.namespace,
            label_selector=self.selector,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_S,
            _preload_content=False,
            _request_timeout=WATCH_TIMEOUT_S + 30,
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message"))
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj["metadata"]["resourceVersion"]
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self.cache.drop(self.kind, self.namespace, obj["metadata"]["name"])
                else:
                    self.cache.put(self.kind, obj)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc)) from exc
            raise
        finally:
            self._response = None
            response.release_conn()
        return version
