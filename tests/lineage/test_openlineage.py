"""OpenLineage events of the demo run: valid RunEvents carrying the run's whole lineage."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jsonschema
import pytest
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.parent_run import ParentRunFacet
from openlineage.client.generated.source_code_location_job import SourceCodeLocationJobFacet

from controller.lineage import openlineage
from tests.lineage.conftest import Demo
from tests.lineage.openlineage_schema import RUN_EVENT

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def events(demo: Demo, run_id: str | None = None) -> list[dict[str, Any]]:
    response = demo.api.client.get(f"/v1/runs/{run_id or demo.run_id}/openlineage")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_facet_schema_urls_match_the_published_spec() -> None:
    assert {
        "parent": ParentRunFacet._get_schema(),
        "sourceCodeLocation": SourceCodeLocationJobFacet._get_schema(),
        "version": DatasetVersionDatasetFacet._get_schema(),
        "errorMessage": ErrorMessageRunFacet._get_schema(),
    } == openlineage.SCHEMAS


def test_events_validate_and_carry_the_lineage(demo: Demo) -> None:
    items = events(demo)
    validator = jsonschema.Draft202012Validator(RUN_EVENT, format_checker=CHECKER)
    for event in items:
        validator.validate(event)
    assert [(e["job"]["name"], e["eventType"]) for e in items if e["eventType"] == "START"] == [
        ("wine-classifier.prepare", "START"), ("wine-classifier.train", "START"),
        ("wine-classifier.evaluate", "START")]
    ends = {e["job"]["name"].split(".")[-1]: e for e in items if e["eventType"] != "START"}
    assert {e["eventType"] for e in ends.values()} == {"COMPLETE"}
    prepare = ends["prepare"]
    code = prepare["job"]["facets"]["sourceCodeLocation"]
    assert code["type"] == "git" and code["version"] == demo.head
    dataset = prepare["inputs"][0]
    assert dataset["name"] == "data/wine.csv"
    assert dataset["facets"]["version"]["datasetVersion"] == demo.md5
    assert dataset["facets"]["dvc"]["remote"] == str(demo.remote.resolve())
    facets = prepare["run"]["facets"]
    assert facets["mlflow"]["runId"] == demo.tasks["prepare"]["lineage"]["mlflow"]["run_id"]
    assert facets["tracectl_environment"]["pip_freeze_sha256"]
    assert facets["tracectl_logs"]["archiveUri"]
    starts = {e["job"]["name"].split(".")[-1]: e for e in items if e["eventType"] == "START"}
    assert starts["prepare"]["run"]["runId"] == prepare["run"]["runId"]
    evaluate = ends["evaluate"]
    model = demo.node("train", "model/model.pkl").split(":")[1]
    assert model in {i["facets"]["version"]["datasetVersion"] for i in evaluate["inputs"]}
    assert [o["facets"]["tracectl_artifact"]["path"] for o in evaluate["outputs"]] == [
        "metrics.json"]
    assert evaluate["outputs"][0]["name"].endswith(demo.node("evaluate", "metrics.json")[9:])


def test_events_join_the_airflow_dag_run(demo: Demo) -> None:
    api = demo.api
    run_id = api.run("airflow-job", airflow_dag_id="wine_dag", airflow_run_id="manual__1")
    task = api.submit(run_id, "hello", command=["python", "-c", "print('hi')"])
    assert api.wait(task["id"])["status"] == "succeeded"
    items = events(demo, run_id)
    assert [e["eventType"] for e in items] == ["START", "COMPLETE"]
    for event in items:
        jsonschema.validate(event, RUN_EVENT, format_checker=CHECKER)
        parent = event["run"]["facets"]["parent"]
        assert parent["job"] == {"namespace": "airflow", "name": "wine_dag"}
        assert parent["run"]["runId"] == openlineage.airflow_run_uuid("wine_dag", "manual__1")


def test_http_emitter_posts_every_event(demo: Demo) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(size)))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        emitter = openlineage.build_emitter(
            f"http://127.0.0.1:{server.server_port}/api/v1/lineage")
        assert isinstance(emitter, openlineage.HttpEmitter)
        sent = openlineage.emit_run(demo.api.client.app.state.service.db, demo.run_id, emitter)
        emitter.close()
    finally:
        server.shutdown()
    assert sent == len(received) == 6
    assert received == events(demo)


def test_emitter_targets() -> None:
    assert openlineage.build_emitter(None) is None
    assert openlineage.build_emitter("none") is None
    with pytest.raises(ValueError, match="ftp://x"):
        openlineage.build_emitter("ftp://x")
