"""Reads task logs back from the search index: OpenSearch 2 or Elasticsearch 8/9 (one DSL).

``log_reader = "opensearch://host:port[/index-pattern]"`` or ``"elasticsearch://..."`` (https
with ``opensearchs://``, ``elasticsearchs://``); the scheme picks the engine's client
(controller/backends.py). The default pattern ``logs-tracectl-*`` covers the data stream the
shipper (rsyslog or Logstash) writes. Each document is one line (kafka_sink.py); lines of a
task are ordered by ``event.sequence``, not by time (two lines may share a timestamp).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from controller.config import Settings
from controller.ports import LogLine, SearchIndex

PAGE = 1000
MAX_SEARCH = 1000


def client_of(uri: str) -> tuple[SearchIndex, str]:
    """The engine's adapter for URI, and the index pattern it names."""
    from controller import backends

    client = backends.search_index(uri)
    return client, client.pattern


def line_of(source: dict[str, Any]) -> LogLine:
    labels = source.get("labels", {})
    event = source.get("event", {})
    return LogLine(
        run_id=str(labels.get("run_id", "")),
        task_id=str(labels.get("task_id", "")),
        attempt=int(labels.get("attempt", 0)),
        seq=int(event.get("sequence", 0)),
        stream=str(labels.get("stream", "")),
        message=str(source.get("message", "")),
        timestamp=datetime.fromisoformat(str(source["@timestamp"]).replace("Z", "+00:00")),
        labels={k: str(v) for k, v in labels.items()},
    )


def term(field: str, value: object) -> dict[str, Any]:
    return {"term": {field: value}}


class SearchLogReader:
    def __init__(self, settings: Settings) -> None:
        self.client, self.index = client_of(settings.log_reader or "")

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.client.search(self.index, body)

    def attempts(self, run_id: str, task_id: str) -> list[int]:
        body = {
            "size": 0,
            "query": {
                "bool": {"filter": [term("labels.run_id", run_id), term("labels.task_id", task_id)]}
            },
            "aggs": {"attempts": {"terms": {"field": "labels.attempt", "size": 100}}},
        }
        buckets = self._search(body).get("aggregations", {}).get("attempts", {})
        return sorted(int(b["key"]) for b in buckets.get("buckets", []))

    def read(
        self, run_id: str, task_id: str, attempt: int | None, after_seq: int, limit: int
    ) -> list[LogLine]:
        if attempt is None:
            known = self.attempts(run_id, task_id)
            if not known:
                return []
            attempt = known[-1]
        body = {
            "size": limit,
            "query": {
                "bool": {
                    "filter": [
                        term("labels.run_id", run_id),
                        term("labels.task_id", task_id),
                        term("labels.attempt", str(attempt)),
                        {"range": {"event.sequence": {"gt": after_seq}}},
                    ]
                }
            },
            "sort": [{"event.sequence": "asc"}],
        }
        return [line_of(hit["_source"]) for hit in self._search(body)["hits"]["hits"]]

    def summary(self, run_id: str, task_id: str, attempt: int) -> dict[str, Any]:
        """Line count and sha256 over the messages, as FileLogReader.summary computes them."""
        digest = hashlib.sha256()
        count = 0
        after = 0
        while True:
            page = self.read(run_id, task_id, attempt, after, PAGE)
            for line in page:
                digest.update(line.message.encode() + b"\n")
                count += 1
            if len(page) < PAGE:
                break
            after = page[-1].seq
        return {
            "lines": count,
            "sha256": digest.hexdigest(),
            "index": self.index,
            "checked_at": datetime.now(UTC).isoformat(),
        }

    def search(
        self,
        run_id: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        text: str | None = None,
        level: str | None = None,
        limit: int = 100,
        team: str | None = None,
    ) -> list[dict[str, Any]]:
        """Lines matching every given filter, newest first; ``text`` is a full-text match.

        TEAM (None: every team) keeps the lines of that team's tasks only.
        """
        filters: list[dict[str, Any]] = []
        for field, value in (
            ("labels.run_id", run_id),
            ("labels.task_id", task_id),
            ("labels.dag_id", dag_id),
            ("log.level", level),
            ("labels.team", team),
        ):
            if value:
                filters.append(term(field, value))
        must = [{"match": {"message": {"query": text, "operator": "and"}}}] if text else []
        body = {
            "size": max(1, min(limit, MAX_SEARCH)),
            "query": {"bool": {"filter": filters, "must": must}},
            "sort": [{"@timestamp": "desc"}, {"event.sequence": "desc"}],
        }
        out = []
        for hit in self._search(body)["hits"]["hits"]:
            source = hit["_source"]
            line = line_of(source)
            out.append(
                {
                    "id": hit["_id"],
                    "timestamp": line.timestamp.isoformat(),
                    "run_id": line.run_id,
                    "task_id": line.task_id,
                    "attempt": line.attempt,
                    "seq": line.seq,
                    "stream": line.stream,
                    "level": source.get("log", {}).get("level"),
                    "message": line.message,
                    "labels": dict(line.labels),
                }
            )
        return out
