"""SearchIndex on Elasticsearch 8/9 through the ``elasticsearch`` client (8.x)."""

from __future__ import annotations

from typing import Any

from elasticsearch import ConflictError, Elasticsearch

from controller.logs.search_index import parse

TIMEOUT_S = 30


class ElasticsearchIndex:
    def __init__(self, uri: str) -> None:
        url, self.pattern = parse(uri, ("elasticsearch", "elasticsearchs"))
        self.client = Elasticsearch(hosts=[url], request_timeout=TIMEOUT_S)

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.client.search(
                index=index, body=body, ignore_unavailable=True, allow_no_indices=True
            )
        )

    def create(self, index: str, doc_id: str, document: dict[str, Any]) -> bool:
        try:
            self.client.create(index=index, id=doc_id, document=document)
        except ConflictError:
            return False
        return True

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index, ignore_unavailable=True)

    def delete_ids(self, index: str, ids: list[str]) -> None:
        # By id in each backing index: _delete_by_query lives in the reindex module, which a
        # node may lack (the local one does: it is not on Maven Central).
        hits = self.search(
            index, {"query": {"ids": {"values": ids}}, "size": len(ids), "_source": False}
        )["hits"]["hits"]
        if hits:
            operations = [{"delete": {"_index": hit["_index"], "_id": hit["_id"]}} for hit in hits]
            self.client.bulk(operations=operations, refresh=True)
