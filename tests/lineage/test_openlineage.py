"""OpenLineage events of the demo run: valid RunEvents carrying the run's whole lineage.

Every event is checked three ways: against tests/lineage/openlineage_schema.py (JSON Schema),
parsed strictly into openlineage-python's generated model and serialized back by its Serde
with nothing lost (tests/lineage/openlineage_model.py), and sent through openlineage-python's
own client and HttpTransport. The Airflow parent runId is checked against the function of
Airflow's OpenLineage provider itself, run in the stack's Airflow venv.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.parent_run import ParentRunFacet
from openlineage.client.generated.source_code_location_job import SourceCodeLocationJobFacet
from openlineage.client.transport.http import HttpConfig, HttpTransport

from controller import backends
from controller.config import Settings
from controller.emit.http_sink import HttpLineageSink
from controller.lineage import openlineage
from tests.lineage.conftest import Demo
from tests.lineage.openlineage_model import (
    InvalidEvent,
    parse_event,
    round_trip,
    without_added_empties,
)
from tests.lineage.openlineage_schema import RUN_EVENT

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER
AIRFLOW = Path(__file__).resolve().parents[2] / "deploy" / "local" / "airflow"
PROVIDER_IDS = Path(__file__).with_name("airflow_provider_ids.py")


def check(event: dict[str, Any]) -> None:
    """Valid by the JSON Schema, by openlineage-python's model, and nothing lost in between."""
    jsonschema.validate(event, RUN_EVENT, format_checker=CHECKER)
    assert round_trip(event) == event


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
    for event in items:
        check(event)
    assert [(e["job"]["name"], e["eventType"]) for e in items if e["eventType"] == "START"] == [
        ("wine-classifier.prepare", "START"),
        ("wine-classifier.train", "START"),
        ("wine-classifier.evaluate", "START"),
    ]
    ends = {e["job"]["name"].split(".")[-1]: e for e in items if e["eventType"] != "START"}
    assert {e["eventType"] for e in ends.values()} == {"COMPLETE"}
    prepare = ends["prepare"]
    code = prepare["job"]["facets"]["sourceCodeLocation"]
    assert code["type"] == "git" and code["version"] == demo.head
    assert code["url"] == code["repoUrl"] == demo.repo.resolve().as_uri()
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
        "metrics.json"
    ]
    assert evaluate["outputs"][0]["name"].endswith(demo.node("evaluate", "metrics.json")[9:])


# Each case: a DAG run as Airflow holds it. The script builds the operator's run labels from it
# and asks the provider for the DAG run's OpenLineage runId.
CASES = [
    {
        "dag_id": "wine_dag",
        "logical_date": "2026-11-25T14:00:00.123456+00:00",
        "run_after": "2026-11-25T14:00:00+00:00",
        "clear_number": 0,
        "namespace": "",
        "task_instance": {"task_id": "train", "try_number": 1, "map_index": -1},
    },
    {
        "dag_id": "wine_dag",
        "logical_date": "2026-11-25T14:00:00.123456+00:00",
        "run_after": "2026-11-25T14:00:00+00:00",
        "clear_number": 2,
        "namespace": "team-a",
        "task_instance": {"task_id": "train", "try_number": 3, "map_index": -1},
    },
    # Airflow 3 runs triggered without a logical date: the provider uses run_after
    {
        "dag_id": "nightly.retrain",
        "logical_date": None,
        "run_after": "2026-11-26T00:00:01.5+00:00",
        "clear_number": 0,
        "namespace": "",
        "task_instance": {"task_id": "score", "try_number": 1, "map_index": 0},
    },
]


@pytest.fixture(scope="module")
def provider_ids() -> list[dict[str, Any]]:
    """(labels, runId) per case, from TracectlTaskOperator and the provider in Airflow's venv."""
    env = {
        **os.environ,
        "TRACECTL_STACK_DIR": os.environ.get(
            "TRACECTL_STACK_DIR", str(AIRFLOW.parents[2] / ".stack")
        ),
    }
    out = subprocess.run(
        [str(AIRFLOW), "python", str(PROVIDER_IDS)],
        input=json.dumps(CASES),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found: list[dict[str, Any]] = json.loads(out.stdout)
    assert len(found) == len(CASES)
    return found


def test_airflow_parent_run_id_is_the_providers(provider_ids: list[dict[str, Any]]) -> None:
    for case, found in zip(CASES, provider_ids, strict=True):
        parent = openlineage.airflow_parent(case["dag_id"], found["labels"])
        assert parent is not None
        assert parent["run"] == {"runId": found["run_id"]}
        assert parent["job"] == {
            "namespace": case["namespace"] or "default",
            "name": case["dag_id"],
        }
    # the clear number and the namespace change the id, as they do the provider's
    assert len({found["run_id"] for found in provider_ids}) == len(CASES)


def test_a_tasks_parent_is_the_providers_task_instance_run(
    provider_ids: list[dict[str, Any]],
) -> None:
    for case, found in zip(CASES, provider_ids, strict=True):
        parent = openlineage.airflow_parent(case["dag_id"], found["labels"], found["task_labels"])
        assert parent is not None
        namespace = case["namespace"] or "default"
        assert parent["run"] == {"runId": found["task_run_id"]}
        assert parent["job"] == {
            "namespace": namespace,
            "name": f"{case['dag_id']}.{case['task_instance']['task_id']}",
        }
        assert parent["root"] == {
            "run": {"runId": found["run_id"]},
            "job": {"namespace": namespace, "name": case["dag_id"]},
        }
    assert len({found["task_run_id"] for found in provider_ids}) == len(CASES)


def test_no_airflow_parent_without_the_operators_labels() -> None:
    assert openlineage.airflow_parent("wine_dag", {"source": "airflow"}) is None
    assert openlineage.airflow_parent(None, {"airflow_logical_date": "2026-11-25T14:00:00"}) is None


def test_events_join_the_airflow_dag_run(demo: Demo, provider_ids: list[dict[str, Any]]) -> None:
    api = demo.api
    case, found = CASES[1], provider_ids[1]
    run_id = api.run(
        "airflow-job",
        airflow_dag_id=case["dag_id"],
        airflow_run_id="manual__1",
        labels=found["labels"],
    )
    task = api.submit(run_id, "hello", command=["python", "-c", "print('hi')"])
    assert api.wait(task["id"])["status"] == "succeeded"
    # submitted as the operator submits: labelled with its task instance's try
    broken = api.submit(
        run_id,
        "broken",
        command=["python", "-c", "raise SystemExit(3)"],
        labels=found["task_labels"],
    )
    assert api.wait(broken["id"])["status"] == "failed"
    items = events(demo, run_id)
    assert [e["eventType"] for e in items] == ["START", "COMPLETE", "START", "FAIL"]
    dag_run = {
        "run": {"runId": found["run_id"]},
        "job": {"namespace": "team-a", "name": "wine_dag"},
    }
    for event in items:
        check(event)
    for event in items[:2]:  # no task labels: the DAG run
        parent = event["run"]["facets"]["parent"]
        assert {"run": parent["run"], "job": parent["job"]} == dag_run and "root" not in parent
    for event in items[2:]:  # the task instance's try, under the DAG run
        parent = event["run"]["facets"]["parent"]
        assert parent["run"] == {"runId": found["task_run_id"]}
        assert parent["job"] == {"namespace": "team-a", "name": "wine_dag.train"}
        assert parent["root"] == dag_run
    error = items[-1]["run"]["facets"]["errorMessage"]
    assert error["programmingLanguage"] == "python" and error["message"]


DELETE = object()


def _mutations() -> Iterator[tuple[str, Callable[[dict[str, Any]], None]]]:
    def put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(event: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node: Any = event
            for key in parents:
                node = node[int(key)] if isinstance(node, list) else node[key]
            if value is DELETE:
                del node[last]
            else:
                node[last] = value

        return apply

    yield "unknown field", put("extra", 1)
    yield "missing job", put("job", DELETE)
    yield "missing eventTime", put("eventTime", DELETE)
    yield "missing facet _producer", put("run.facets.tracectl_task._producer", DELETE)
    yield "missing required facet field", put("inputs.0.facets.version.datasetVersion", DELETE)
    yield "unknown facet field", put("job.facets.sourceCodeLocation.commit", "abc")
    yield (
        "unknown facet",
        put("run.facets.surprise", {"_producer": "https://x.y/z", "_schemaURL": "https://x.y/z"}),
    )
    yield "wrong type: string for integer", put("run.facets.tracectl_task.attempt", "1")
    yield "wrong type: boolean for integer", put("run.facets.tracectl_task.attempt", True)
    yield "wrong type: number for string", put("job.name", 5)
    yield "null for an optional string", put("job.facets.sourceCodeLocation.branch", None)
    yield "bad runId", put("run.runId", "run-1")
    yield "non-canonical runId", put("run.runId", "{6f1d3c1e-2b1a-5a4e-9a63-7d0f8f2a1c01}")
    yield "eventTime without time", put("eventTime", "2026-11-25")
    yield "eventTime without zone", put("eventTime", "2026-11-25T14:00:00")
    yield "eventTime not a date", put("eventTime", "yesterday")
    yield "unknown eventType", put("eventType", "DONE")
    yield "relative producer", put("producer", "tracectl")
    yield (
        "facet _schemaURL of another facet",
        put("inputs.0.facets.version._schemaURL", openlineage.SCHEMAS["parent"]),
    )


@pytest.mark.parametrize("mutate", [pytest.param(fn, id=name) for name, fn in _mutations()])
def test_model_rejects_what_the_spec_rejects(
    demo: Demo,
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    event = next(e for e in events(demo) if e["eventType"] == "COMPLETE")
    parse_event(event)
    broken = copy.deepcopy(event)
    mutate(broken)
    with pytest.raises(InvalidEvent):
        parse_event(broken)


class Receiver:
    """A real HTTP server on a free port that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(size)))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_the_http_sink_posts_every_event_in_order(
    demo: Demo, receiver: Receiver, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", openlineage_url=f"{receiver.url}/api/v1/lineage")
    sink = backends.openlineage_sink(settings)
    assert isinstance(sink, HttpLineageSink)
    for event in events(demo):
        assert sink.put(demo.run_id, json.dumps(event).encode())
    assert sink.flush(timeout_s=30)
    sink.close()
    assert receiver.received == events(demo)
    assert len(receiver.received) == 6


def test_openlineage_python_client_sends_the_same_events(demo: Demo, receiver: Receiver) -> None:
    """Interop: the events as openlineage-python's objects, sent by its own client and
    HttpTransport, arrive exactly as tracectl emitted them."""
    items = events(demo)
    client = OpenLineageClient(
        transport=HttpTransport(HttpConfig(url=receiver.url, endpoint="api/v1/lineage")),
        # the client would add the sourceCodeLocation of the directory the tests run in
        config={"facets": {"source_code_location": {"disabled": True}}},
    )
    for event in items:
        client.emit(parse_event(event))
    client.close()
    assert len(receiver.received) == len(items) == 6
    for got in receiver.received:  # the one thing the client adds: its own version, as a tag
        tags = got["run"]["facets"].pop("tags")["tags"]
        assert [(t["key"], t["source"]) for t in tags] == [
            ("openlineage_client_version", "OPENLINEAGE_CLIENT")
        ]
    assert [
        without_added_empties(got, sent) for got, sent in zip(receiver.received, items, strict=True)
    ] == items


def test_no_openlineage_target_means_no_sink(tmp_path: Path) -> None:
    assert backends.openlineage_sink(Settings(home=tmp_path)) is None
