"""PROV-JSON of the demo run: the `prov` library reads it back, with every relation in place."""

from __future__ import annotations

import json

from prov.model import ProvDocument

from controller import __version__
from tests.lineage.conftest import Demo


def test_prov_json_round_trips_and_holds_the_lineage(demo: Demo) -> None:
    response = demo.api.client.get(f"/v1/runs/{demo.run_id}/prov")
    assert response.status_code == 200, response.text
    document = response.json()
    parsed = ProvDocument.deserialize(content=json.dumps(document), format="json")
    again = json.loads(parsed.serialize(format="json"))
    for section in (
        "entity",
        "activity",
        "agent",
        "used",
        "wasGeneratedBy",
        "wasAssociatedWith",
        "wasDerivedFrom",
    ):
        assert len(again[section]) == len(document[section]), section
    assert parsed.get_provn().startswith("document")

    tasks = {name: f"task:{t['id']}" for name, t in demo.tasks.items()}
    assert set(tasks.values()) <= set(document["activity"])
    assert "team:default" in document["agent"]
    dataset = next(k for k, v in document["entity"].items() if v.get("tracectl:md5") == demo.md5)
    model = "artifact:" + demo.node("train", "model/model.pkl").split(":")[1]
    metrics = "artifact:" + demo.node("evaluate", "metrics.json").split(":")[1]
    used = {(u["prov:activity"], u["prov:entity"]) for u in document["used"].values()}
    assert (tasks["prepare"], dataset) in used and (tasks["evaluate"], model) in used
    generated = {
        (g["prov:entity"], g["prov:activity"]) for g in document["wasGeneratedBy"].values()
    }
    assert (metrics, tasks["evaluate"]) in generated
    derived = {
        (d["prov:generatedEntity"], d["prov:usedEntity"])
        for d in document["wasDerivedFrom"].values()
    }
    assert (metrics, model) in derived
    assert f"commit:{demo.head}" in document["entity"]
    software = f"tracectl:controller-{__version__}"
    assert document["agent"][software]["prov:type"] == "prov:SoftwareAgent"
    assert document["agent"][software]["tracectl:version"] == __version__
    associated = {
        (a["prov:activity"], a["prov:agent"]) for a in document["wasAssociatedWith"].values()
    }
    for activity in tasks.values():
        assert {(activity, "team:default"), (activity, software)} <= associated
    assert {agent for _, agent in associated} == {"team:default", software}
    assert [
        (d["prov:delegate"], d["prov:responsible"]) for d in document["actedOnBehalfOf"].values()
    ] == [(software, "team:default")]
    assert (
        document["entity"][f"commit:{demo.head}"]["prov:location"] == demo.repo.resolve().as_uri()
    )
