"""logstash/: the index template installs on the real OpenSearch, lifecycle policies have the
required shape (ISM installs when the plugin is there), and the Kibana saved objects are
importable as far as can be checked without Kibana (which is in no registry reachable here).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

LOGSTASH = Path(__file__).resolve().parents[2] / "logstash"
KIBANA = LOGSTASH / "kibana"
SIZE_10GB = "10gb"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((LOGSTASH / name).read_text()))


def flat_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(flat_fields(spec["properties"], f"{path}."))
        else:
            out[path] = spec.get("type", "object")
            for sub, sub_spec in spec.get("fields", {}).items():
                out[f"{path}.{sub}"] = sub_spec["type"]
    return out


TEMPLATE_FIELDS = flat_fields(load("index-template.json")["template"]["mappings"]["properties"])


@pytest.mark.opensearch
def test_index_template_installs_and_maps_ecs_fields(opensearch: dict[str, str]) -> None:
    client = OpenSearch(hosts=[opensearch["TRACECTL_OPENSEARCH_URL"]], timeout=30)
    body = load("index-template.json")
    name = body.pop("name")
    assert client.indices.put_index_template(name=name, body=body)["acknowledged"]
    probe = f"logs-tracectl-probe{uuid.uuid4().hex[:6]}"
    simulated = client.transport.perform_request(
        "POST", f"/_index_template/_simulate_index/{probe}"
    )["template"]["mappings"]
    fields = flat_fields(simulated["properties"])
    expected = {
        "@timestamp": "date",
        "message": "text",
        "message.keyword": "keyword",
        "log.level": "keyword",
        "event.id": "keyword",
        "event.sequence": "long",
        "event.dataset": "keyword",
        "service.name": "keyword",
        "container.id": "keyword",
        "orchestrator.namespace": "keyword",
    }
    expected.update(
        {
            f"labels.{k}": "keyword"
            for k in (
                "run_id",
                "task_id",
                "dag_id",
                "airflow_run_id",
                "attempt",
                "stream",
                "pipeline",
                "team",
            )
        }
    )
    assert {k: fields.get(k) for k in expected} == expected
    # A real data stream backed by it accepts a tracectl document.
    client.index(
        index=probe,
        body={
            "@timestamp": "2026-01-01T00:00:00Z",
            "message": "m",
            "labels": {"run_id": "r"},
            "event": {"sequence": 1},
        },
        params={"op_type": "create", "refresh": "true"},
    )
    try:
        assert client.count(index=probe)["count"] == 1
    finally:
        client.indices.delete_data_stream(name=probe)


def test_ilm_policy_rolls_over_and_deletes() -> None:
    phases = load("ilm-policy.json")["policy"]["phases"]
    assert set(phases) == {"hot", "delete"}
    rollover = phases["hot"]["actions"]["rollover"]
    assert rollover == {"max_primary_shard_size": SIZE_10GB, "max_age": "1d"}
    assert phases["delete"] == {"min_age": "30d", "actions": {"delete": {}}}


def check_ism_shape(policy: dict[str, Any]) -> None:
    states = {s["name"]: s for s in policy["states"]}
    assert policy["default_state"] in states
    for state in states.values():
        for transition in state["transitions"]:
            assert transition["state_name"] in states
    hot = states["hot"]
    assert hot["actions"] == [
        {"rollover": {"min_primary_shard_size": SIZE_10GB, "min_index_age": "1d"}}
    ]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "30d"}}]
    assert states["delete"]["actions"] == [{"delete": {}}]
    assert policy["ism_template"][0]["index_patterns"] == ["logs-tracectl-*"]


@pytest.mark.opensearch
def test_ism_policy_installs_or_has_the_ism_shape(opensearch: dict[str, str]) -> None:
    body = load("ism-policy.json")
    check_ism_shape(body["policy"])
    client = OpenSearch(hosts=[opensearch["TRACECTL_OPENSEARCH_URL"]], timeout=30)
    plugins = {row.split()[1] for row in client.cat.plugins().splitlines() if row.strip()}
    if "opensearch-index-management" not in plugins:
        # The local node runs without the ISM plugin: the shape check above is all there is.
        with pytest.raises((NotFoundError, RequestError, TransportError)):
            client.transport.perform_request("GET", "/_plugins/_ism/policies")
        return
    name = f"tracectl-logs-test-{uuid.uuid4().hex[:6]}"
    client.transport.perform_request("PUT", f"/_plugins/_ism/policies/{name}", body=body)
    try:
        got = client.transport.perform_request("GET", f"/_plugins/_ism/policies/{name}")
        check_ism_shape(got["policy"])
    finally:
        client.transport.perform_request("DELETE", f"/_plugins/_ism/policies/{name}")


# -- Kibana saved objects ------------------------------------------------------------------
REQUIRED = {
    "index-pattern": {"title", "timeFieldName"},
    "search": {"title", "columns", "sort", "kibanaSavedObjectMeta"},
    "visualization": {"title", "visState", "uiStateJSON", "kibanaSavedObjectMeta"},
    "dashboard": {"title", "panelsJSON", "optionsJSON", "kibanaSavedObjectMeta", "timeRestore"},
}
AGG_TYPES = {"count", "avg", "max", "min", "sum", "terms", "date_histogram", "cardinality"}


def saved_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(KIBANA.glob("*.ndjson")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert line.strip(), f"{path.name}:{number}: blank line"
            obj = json.loads(line)
            assert isinstance(obj, dict), f"{path.name}:{number}: not an object"
            objects.append(obj)
    return objects


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]))


def test_kibana_saved_objects_are_importable() -> None:
    objects = saved_objects()
    by_key = {(o["type"], o["id"]): o for o in objects}
    assert len(by_key) == len(objects), "duplicate (type, id)"
    types = [o["type"] for o in objects]
    assert types.count("dashboard") == 1 and types.count("search") == 2
    titles = {o["attributes"]["title"] for o in objects}
    assert {"logs-tracectl-*", "tracectl: logs of a run", "tracectl: errors of a task"} <= titles
    for obj in objects:
        assert {"id", "type", "attributes", "references"} <= set(obj), obj.get("id")
        assert REQUIRED[obj["type"]] <= set(obj["attributes"]), obj["id"]
        names = [ref["name"] for ref in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']}: reference names repeat"
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, f"{obj['id']}: dangling {ref}"
        if "kibanaSavedObjectMeta" in obj["attributes"]:
            source = search_source(obj)
            if "indexRefName" in source:
                assert source["indexRefName"] in names
        if obj["type"] == "dashboard":
            panels = json.loads(obj["attributes"]["panelsJSON"])
            json.loads(obj["attributes"]["optionsJSON"])
            assert len(panels) == 3
            for panel in panels:
                assert {"x", "y", "w", "h", "i"} <= set(panel["gridData"])
                assert f"{panel['panelIndex']}:{panel['panelRefName']}" in names
        if obj["type"] == "visualization":
            state = json.loads(obj["attributes"]["visState"])
            json.loads(obj["attributes"]["uiStateJSON"])
            assert state["title"] == obj["attributes"]["title"]
            assert {agg["type"] for agg in state["aggs"]} <= AGG_TYPES


def test_kibana_objects_use_fields_the_template_maps() -> None:
    used: set[str] = set()
    for obj in saved_objects():
        attributes = obj["attributes"]
        if obj["type"] == "index-pattern":
            used.add(attributes["timeFieldName"])
        if obj["type"] == "search":
            used.update(attributes["columns"])
            used.update(field for field, _ in attributes["sort"])
        if obj["type"] == "visualization":
            for agg in json.loads(attributes["visState"])["aggs"]:
                if "field" in agg["params"]:
                    used.add(agg["params"]["field"])
    assert used, "no field found"
    unmapped = sorted(f for f in used if f not in TEMPLATE_FIELDS)
    assert not unmapped, f"fields the index template does not map: {unmapped}"
