"""Every field a Kibana saved object names exists in the index template AND in the documents
the real pipeline (controller -> Kafka -> rsyslog) indexed, on OpenSearch and Elasticsearch."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from controller.ports import SearchIndex
from tests.core.conftest import Api, python
from tests.logs.test_logstash_assets import TEMPLATE_FIELDS, saved_objects, search_source
from tests.waiting import poll_until

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.elasticsearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(600),
]

KQL_FIELD = re.compile(r"([\w.@]+)\s*:")
TASK = "import sys\nprint('a line', flush=True)\nprint('ERROR: a bad one', file=sys.stderr)\n"


def fields_of(obj: dict[str, Any]) -> set[str]:
    """The fields one saved object names: columns, sort, aggregations, time field, formats,
    and the fields of its KQL query."""
    attributes, used = obj["attributes"], set()
    if obj["type"] == "index-pattern":
        used.add(attributes["timeFieldName"])
        used.update(json.loads(attributes.get("fieldFormatMap") or "{}"))
    if obj["type"] == "search":
        used.update(attributes["columns"])
        used.update(field for field, _ in attributes["sort"])
    if obj["type"] == "visualization":
        used.update(
            agg["params"]["field"]
            for agg in json.loads(attributes["visState"])["aggs"]
            if "field" in agg["params"]
        )
    if "kibanaSavedObjectMeta" in attributes:
        used.update(KQL_FIELD.findall(str(search_source(obj).get("query", {}).get("query", ""))))
    return used


def used_by_pattern() -> dict[str, set[str]]:
    """Fields named per index pattern title (logs-tracectl-*, logs-tracectl.status-*)."""
    objects = saved_objects()
    titles = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    used: dict[str, set[str]] = {title: set() for title in titles.values()}
    for obj in objects:
        if obj["type"] == "index-pattern":
            used[obj["attributes"]["title"]] |= fields_of(obj)
        for ref in obj["references"]:
            if ref["type"] == "index-pattern":
                used[titles[ref["id"]]] |= fields_of(obj)
    return used


def flat(source: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in source.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


def indexed_fields(search: SearchIndex, pattern: str, run_id: str, least: int) -> set[str]:
    """Field names of the run's documents in PATTERN, once at least LEAST are searchable."""
    body = {"query": {"term": {"labels.run_id": run_id}}, "size": 1000}

    def hits() -> list[dict[str, Any]]:
        search.refresh(pattern)
        return list(search.search(pattern, body)["hits"]["hits"])

    found = poll_until(hits, lambda found: len(found) >= least, 120, 0.5)
    return set().union(*(flat(hit["_source"]) for hit in found))


def test_kibana_fields_exist_in_template_and_in_indexed_documents(
    pipeline_api: Api, search: SearchIndex
) -> None:
    used = used_by_pattern()
    assert set(used) == {"logs-tracectl-*", "logs-tracectl.status-*"} and all(used.values())
    unmapped = sorted(f for fields in used.values() for f in fields if f not in TEMPLATE_FIELDS)
    assert not unmapped, f"fields the index template does not map: {unmapped}"

    run_id = pipeline_api.run(pipeline="kibana-fields", airflow_dag_id="dag_kibana")
    task = pipeline_api.submit(run_id, "fields", command=python(TASK))
    assert pipeline_api.wait(task["id"])["status"] == "succeeded"
    least = {"logs-tracectl-*": 2, "logs-tracectl.status-*": 4}  # submitted .. succeeded
    for pattern, fields in used.items():
        present = indexed_fields(search, pattern, run_id, least[pattern])
        missing = sorted(fields - present)
        assert not missing, f"{pattern}: fields no indexed document has: {missing}"
