"""What the search index holds for a task attempt, checked against what the task wrote.

Fault tests run the controller with the Kafka log sink; the deploy/local shipper (rsyslog)
indexes ``tracectl.logs`` into ``logs-tracectl-default`` on each engine; the index is read
through the controller's adapter for the engine (controller.ports.SearchIndex). A line lost
anywhere on the way (runner spool, Kafka, shipper) is a missing sequence number; a line
shipped twice under another id is a second document for that sequence number.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from controller.ports import SearchIndex
from tests.waiting import poll_until

INDEX = "logs-tracectl-*"
PAGE = 10000


def documents(client: SearchIndex, run_id: str) -> list[dict[str, Any]]:
    """Every indexed line of RUN_ID, with its document ``_id``."""
    client.refresh(INDEX)
    body: dict[str, Any] = {
        "query": {"term": {"labels.run_id": run_id}},
        "size": PAGE,
        "sort": [{"event.sequence": "asc"}, {"@timestamp": "asc"}],
    }
    out: list[dict[str, Any]] = []
    while True:
        hits = client.search(INDEX, body)["hits"]["hits"]
        out.extend({"_id": hit["_id"], **hit["_source"]} for hit in hits)
        if len(hits) < PAGE:
            return out
        body["search_after"] = hits[-1]["sort"]


def by_attempt(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Documents grouped by (task id, attempt), each group in event.sequence order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        key = (doc["labels"]["task_id"], str(doc["labels"]["attempt"]))
        groups.setdefault(key, []).append(doc)
    for group in groups.values():
        group.sort(key=lambda d: int(d["event"]["sequence"]))
    return groups


def wait_for_lines(
    client: SearchIndex, run_id: str, total: int, timeout_s: float = 300
) -> list[dict[str, Any]]:
    """The run's documents once at least TOTAL are indexed (or whatever is there at the
    deadline); then a pause, so that a duplicate still in flight would be counted too."""

    def docs() -> list[dict[str, Any]]:
        try:
            return documents(client, run_id)
        except Exception:  # the index or its data stream may not exist yet
            return []

    poll_until(docs, lambda found: len(found) >= total, timeout_s, 1.0)
    time.sleep(3.0)
    return documents(client, run_id)


def file_record(home: Path, run_id: str) -> dict[tuple[str, str], list[str]]:
    """The controller's file record of RUN_ID (<home>/logs/<run>/<task>/<attempt>.jsonl):
    the messages of each (task id, attempt), in sequence order."""
    record: dict[tuple[str, str], list[str]] = {}
    for path in sorted((home / "logs" / run_id).glob("*/*.jsonl")):
        lines = [json.loads(raw) for raw in path.read_text().splitlines()]
        assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1)), path
        record[(path.parent.name, path.stem)] = [x["message"] for x in lines]
    return record


def exactly_once_problems(
    groups: dict[tuple[str, str], list[dict[str, Any]]], expected: dict[tuple[str, str], list[str]]
) -> list[str]:
    """What differs between the index and EXPECTED, the file record's messages per attempt
    in sequence order (sequence numbers are 1..N): one line per problem, none when equal."""
    problems = []
    for key in sorted(set(groups) | set(expected)):
        docs, want = groups.get(key, []), expected.get(key, [])
        seqs = Counter(int(d["event"]["sequence"]) for d in docs)
        missing = [s for s in range(1, len(want) + 1) if seqs[s] == 0]
        doubled = sorted(s for s, n in seqs.items() if n > 1)
        extra = sorted(s for s in seqs if not 1 <= s <= len(want))
        ids = Counter(d["event"]["id"] for d in docs)
        same_id = sorted(i for i, n in ids.items() if n > 1)
        wrong_id = [
            d["event"]["id"]
            for d in docs
            if d["event"]["id"] != f"{key[0]}:{key[1]}:{d['event']['sequence']}"
        ]
        if missing or doubled or extra or same_id or wrong_id:
            problems.append(
                f"{key}: {len(docs)} documents for {len(want)} lines; missing "
                f"{missing[:10]}, doubled {doubled[:10]}, unexpected {extra[:10]}, "
                f"repeated event ids {same_id[:5]}, ids not task:attempt:seq "
                f"{wrong_id[:5]}"
            )
        elif [d["message"] for d in docs] != want:
            problems.append(f"{key}: indexed messages differ from the file record")
    return problems


def engine_index(env: dict[str, str], engine: str) -> SearchIndex:
    """ENGINE's index (opensearch, elasticsearch) from its deploy/local env lines."""
    from controller import backends

    url = env[f"TRACECTL_{engine.upper()}_URL"].split("://", 1)[1]
    return backends.search_index(f"{engine}://{url}")
