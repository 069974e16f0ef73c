"""The Airflow extra links find what they name: the Kibana link's query, run by the real index
on documents the real pipeline (controller -> Kafka -> shipper -> index) wrote, returns the
task's lines and no other task's; the lineage link answers for the task."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from controller.airflow.urls import kibana_query, kibana_url, lineage_url
from controller.ports import SearchIndex
from tests.core.conftest import Api, python
from tests.logs.conftest import INDEX, wait_indexed

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.elasticsearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(600),
]


def lines(name: str) -> list[str]:
    return python(f"for i in range(3):\n    print('{name} line', i, flush=True)\n")


def query_hits(search: SearchIndex, query: str) -> list[dict[str, object]]:
    """Every document QUERY (Lucene, as Kibana sends it) finds, as the engine runs it."""
    search.refresh(INDEX)
    body = {"query": {"query_string": {"query": query}}, "size": 1000}
    return [hit["_source"] for hit in search.search(INDEX, body)["hits"]["hits"]]


def test_the_kibana_link_query_finds_the_task_lines_in_the_real_index(
    pipeline_api: Api, search: SearchIndex
) -> None:
    run_id = pipeline_api.run(pipeline="extra-links", airflow_dag_id="dag_links")
    mine = pipeline_api.submit(run_id, "mine", command=lines("mine"))
    other = pipeline_api.submit(run_id, "other", command=lines("other"))
    for task in (mine, other):
        assert pipeline_api.wait(task["id"])["status"] == "succeeded"
    indexed = wait_indexed(search, mine["id"], 3)
    assert len(indexed) >= 3, "the pipeline indexed the task's lines"

    hits = query_hits(search, kibana_query(mine["id"]))
    assert {hit["labels"]["task_id"] for hit in hits} == {mine["id"]}  # type: ignore[index]
    assert len(hits) == len(indexed)
    assert [m for m in (h["message"] for h in hits) if "line" in str(m)], "the task's output"
    assert kibana_query(mine["id"]) in unquote(kibana_url("http://kibana:5601", mine["id"]))


def test_the_lineage_link_answers_for_the_task(pipeline_api: Api) -> None:
    run_id = pipeline_api.run(pipeline="extra-links")
    task = pipeline_api.submit(run_id, "traced", command=lines("traced"))
    assert pipeline_api.wait(task["id"])["status"] == "succeeded"
    path = lineage_url("", task["id"])
    response = pipeline_api.client.get(path)
    assert response.status_code == 200, response.text
    assert task["id"] in response.text
