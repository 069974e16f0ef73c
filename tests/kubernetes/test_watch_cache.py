"""The informer's list-then-watch loop: resume from the last resourceVersion, re-list on 410.

Driven by a scripted list function that answers like the API server (a LIST body, then
watch streams of JSON lines) so that a 410 Gone can be produced on demand; the live tests
run the same informer against the real API server.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from controller.executors.k8s_watch import Informer, ObjectCache
from tests.waiting import wait_for


class Stream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.body = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    def stream(self, amt: Any = None, decode_content: Any = None) -> Any:
        yield self.body

    def release_conn(self) -> None: ...


class Listing:
    def __init__(self, items: list[dict[str, Any]], version: str) -> None:
        self.data = json.dumps({"items": items, "metadata": {"resourceVersion": version}})


def job(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}


def test_resume_then_relist_after_410() -> None:
    calls: list[tuple[str, str | None]] = []
    stop = threading.Event()
    script = [
        Listing([job("a", "10")], "10"),
        Stream(
            [
                {"type": "ADDED", "object": job("b", "11")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ]
        ),
        Stream(
            [
                {"type": "DELETED", "object": job("a", "16")},
                {"type": "ERROR", "object": {"code": 410, "message": "too old"}},
            ]
        ),
        Listing([job("b", "20"), job("c", "20")], "20"),
    ]

    def list_fn(namespace: str, **kwargs: Any) -> Any:
        calls.append(("watch" if kwargs.get("watch") else "list", kwargs.get("resource_version")))
        if not script:
            stop.wait(5)
            return Stream([])
        return script.pop(0)

    cache = ObjectCache()
    informer = Informer(cache, "job", "ns", list_fn, "sel", stop)
    informer.start()
    wait_for("two relists", lambda: informer.relists >= 2, timeout=5, every=0.01)
    stop.set()
    assert calls[:4] == [("list", None), ("watch", "10"), ("watch", "15"), ("list", None)]
    assert [x["metadata"]["name"] for x in cache.select("job", "ns", {})] == ["b", "c"]
    assert informer.relists == 2


def test_select_by_labels_follows_puts_relabels_and_drops() -> None:
    cache = ObjectCache()

    def pod(name: str, namespace: str = "ns", **labels: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}

    cache.put("pod", pod("a", **{"job-name": "j1", "attempt": "1"}))
    cache.put("pod", pod("b", **{"job-name": "j1", "attempt": "2"}))
    cache.put("pod", pod("c", **{"job-name": "j2"}))
    cache.put("pod", pod("a", namespace="other", **{"job-name": "j1"}))
    cache.put("job", pod("j1", **{"job-name": "j1"}))

    def names(kind: str, **labels: str) -> list[str]:
        return [o["metadata"]["name"] for o in cache.select(kind, "ns", labels)]

    assert names("pod", **{"job-name": "j1"}) == ["a", "b"]
    assert names("pod", **{"job-name": "j1", "attempt": "2"}) == ["b"]
    assert names("pod", **{"job-name": "nope"}) == []
    cache.put("pod", pod("b", **{"job-name": "j2"}))  # relabelled: leaves the old index
    assert names("pod", **{"job-name": "j1"}) == ["a"]
    assert names("pod", **{"job-name": "j2"}) == ["b", "c"]
    cache.drop("pod", "ns", "c")
    assert names("pod", **{"job-name": "j2"}) == ["b"]
    cache.replace("pod", "ns", [pod("d", **{"job-name": "j2"})])
    assert names("pod", **{"job-name": "j2"}) == ["d"]
    assert names("pod") == ["d"]
    assert [o["metadata"]["name"] for o in cache.select("pod", "other", {})] == ["a"]
    assert names("job", **{"job-name": "j1"}) == ["j1"]
