"""SearchIndex on OpenSearch 2 through opensearch-py."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError

from controller.logs.search_index import LENIENT, parse

TIMEOUT_S = 30


class OpenSearchIndex:
    def __init__(self, uri: str) -> None:
        url, self.pattern = parse(uri, ("opensearch", "opensearchs"))
        self.client = OpenSearch(hosts=[url], timeout=TIMEOUT_S)

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        params = {key: str(value).lower() for key, value in LENIENT.items()}
        result: dict[str, Any] = self.client.search(index=index, body=body, params=params)
        return result

    def create(self, index: str, doc_id: str, document: dict[str, Any]) -> bool:
        try:
            self.client.create(index=index, id=doc_id, body=document)
        except ConflictError:
            return False
        return True

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index, params={"ignore_unavailable": "true"})

    def delete_ids(self, index: str, ids: list[str]) -> None:
        self.client.delete_by_query(
            index=index,
            body={"query": {"ids": {"values": ids}}},
            params={"refresh": "true", "conflicts": "proceed"},
        )
