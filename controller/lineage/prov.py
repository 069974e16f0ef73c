"""W3C PROV-JSON of a run: artifacts and datasets are entities, task attempts activities.

Mapping: a task is a prov:Activity associated with its team (prov:Organization) and with
tracectl itself (prov:SoftwareAgent, its version, actedOnBehalfOf the team); every artifact
or DVC dataset version it read is `used`, every output `wasGeneratedBy` it, and each output
`wasDerivedFrom` each of that task's inputs.
"""

from __future__ import annotations

from typing import Any

from controller import __version__
from controller.errors import NotFound
from controller.lineage.uris import repo_uri
from controller.store.database import Database
from controller.store.run_rows import run_records, run_tasks
from controller.store.schema import RunRow

PREFIXES = {
    "tracectl": "https://github.com/tracectl/tracectl/ns#",
    "artifact": "urn:tracectl:artifact:sha256:",
    "dataset": "urn:tracectl:dataset:",
    "task": "urn:tracectl:task:",
    "run": "urn:tracectl:run:",
    "team": "urn:tracectl:team:",
    "commit": "urn:tracectl:git:",
    "env": "urn:tracectl:env:sha256:",
}


def _s(value: Any) -> dict[str, str]:
    return {"$": str(value), "type": "xsd:string"}


def _time(value: Any) -> str | None:
    if not value:
        return None
    text = value if isinstance(value, str) else value.isoformat()
    return text.replace("+00:00", "Z")


class _Doc:
    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"prefix": dict(PREFIXES)}
        self._counter = 0

    def add(self, section: str, ident: str, attrs: dict[str, Any]) -> None:
        self.doc.setdefault(section, {}).setdefault(ident, {}).update(
            {k: v for k, v in attrs.items() if v is not None}
        )

    def relate(self, section: str, attrs: dict[str, Any]) -> None:
        self._counter += 1
        self.add(section, f"_:{section}{self._counter}", attrs)


def _artifact_id(sha: str) -> str:
    return f"artifact:{sha}"


def _dataset_id(path: str, md5: str) -> str:
    # PROV-N local names may not hold '/' or '@'; flattened so the document also serializes
    # to PROV-N and PROV-XML.
    return "dataset:" + path.replace("/", "_") + "-" + md5


def _software_agent(doc: _Doc, team: str) -> str:
    """tracectl as the prov:SoftwareAgent that ran each task, on behalf of the team."""
    agent = f"tracectl:controller-{__version__}"
    doc.add(
        "agent",
        agent,
        {
            "prov:type": "prov:SoftwareAgent",
            "prov:label": "tracectl",
            "tracectl:version": __version__,
        },
    )
    doc.relate("actedOnBehalfOf", {"prov:delegate": agent, "prov:responsible": team})
    return agent


def _environment(doc: _Doc, activity: str, env: dict[str, Any]) -> None:
    """The environment as an entity the task used (role `environment`)."""
    if not env.get("key"):
        return
    entity = f"env:{env['key']}"
    doc.add(
        "entity",
        entity,
        {
            "prov:type": _s("tracectl:Environment"),
            "tracectl:kind": env.get("kind"),
            "prov:label": env.get("path") or env.get("kind"),
            "tracectl:lockSha256": env.get("lock_sha256"),
            "tracectl:pythonVersion": env.get("python_version"),
            "tracectl:packages": " ".join(env.get("packages") or []),
            "prov:location": env.get("packages_uri"),
        },
    )
    doc.relate(
        "used", {"prov:activity": activity, "prov:entity": entity, "prov:role": _s("environment")}
    )


def run_document(db: Database, run_id: str) -> dict[str, Any]:
    with db.read() as session:
        run = session.get(RunRow, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        tasks = run_tasks(session, run_id)
        records = run_records(session, run_id)
    doc = _Doc()
    team = f"team:{run.team}"
    doc.add("agent", team, {"prov:type": "prov:Organization", "prov:label": run.team})
    software = _software_agent(doc, team)
    doc.add(
        "activity",
        f"run:{run.id}",
        {
            "prov:startTime": _time(run.created_at),
            "prov:endTime": _time(run.finished_at),
            "prov:label": f"run {run.pipeline}",
            "tracectl:status": run.status,
            "tracectl:reproduces": run.reproduces,
        },
    )
    doc.relate("wasAssociatedWith", {"prov:activity": f"run:{run.id}", "prov:agent": team})
    for task in tasks:
        record = records.get(task.id) or {}
        activity = f"task:{task.id}"
        code = record.get("code") or {}
        doc.add(
            "activity",
            activity,
            {
                "prov:startTime": _time(task.started_at),
                "prov:endTime": _time(task.finished_at),
                "prov:label": task.name,
                "tracectl:status": task.status,
                "tracectl:attempt": task.attempt,
                "tracectl:commit": code.get("commit"),
                "tracectl:mlflowRunId": task.mlflow_run_id,
                "tracectl:image": (record.get("environment") or {}).get("image"),
            },
        )
        doc.relate("wasAssociatedWith", {"prov:activity": activity, "prov:agent": team})
        doc.relate("wasAssociatedWith", {"prov:activity": activity, "prov:agent": software})
        doc.relate("wasInformedBy", {"prov:informed": activity, "prov:informant": f"run:{run.id}"})
        used: list[str] = []
        _environment(doc, activity, record.get("environment") or {})
        if code.get("commit"):
            source = f"commit:{code['commit']}"
            doc.add(
                "entity",
                source,
                {
                    "prov:type": _s("tracectl:GitCommit"),
                    "prov:location": code.get("repo") and repo_uri(code["repo"]),
                },
            )
            doc.relate(
                "used", {"prov:activity": activity, "prov:entity": source, "prov:role": _s("code")}
            )
        for data in record.get("data", []):
            entity = _dataset_id(data["path"], data["md5"])
            doc.add(
                "entity",
                entity,
                {
                    "prov:type": _s("tracectl:DvcDataset"),
                    "prov:label": data["path"],
                    "tracectl:md5": data["md5"],
                    "tracectl:rev": data["rev"],
                    "prov:location": data.get("remote"),
                },
            )
            doc.relate(
                "used", {"prov:activity": activity, "prov:entity": entity, "prov:role": _s("data")}
            )
            used.append(entity)
        for uri in task.spec.get("models") or []:
            entity = f"model:{uri.removeprefix('models:/')}"
            doc.add("entity", entity, {"prov:type": _s("tracectl:ModelVersion"), "prov:label": uri})
            doc.relate(
                "used", {"prov:activity": activity, "prov:entity": entity, "prov:role": _s("model")}
            )
            used.append(entity)
        for item in record.get("inputs", []):
            entity = _artifact_id(item["sha256"])
            doc.add(
                "entity",
                entity,
                {
                    "prov:type": _s("tracectl:Artifact"),
                    "tracectl:sha256": item["sha256"],
                    "prov:location": item["uri"],
                },
            )
            doc.relate(
                "used",
                {"prov:activity": activity, "prov:entity": entity, "prov:role": _s(item["path"])},
            )
            used.append(entity)
        for out in record.get("outputs", []):
            entity = _artifact_id(out["sha256"])
            doc.add(
                "entity",
                entity,
                {
                    "prov:type": _s("tracectl:Artifact"),
                    "prov:label": out["path"],
                    "tracectl:sha256": out["sha256"],
                    "tracectl:size": out["size"],
                    "prov:location": out["uri"],
                },
            )
            doc.relate(
                "wasGeneratedBy",
                {
                    "prov:entity": entity,
                    "prov:activity": activity,
                    "prov:time": _time(task.finished_at),
                },
            )
            doc.relate("wasAttributedTo", {"prov:entity": entity, "prov:agent": team})
            for source in used:
                doc.relate(
                    "wasDerivedFrom",
                    {
                        "prov:generatedEntity": entity,
                        "prov:usedEntity": source,
                        "prov:activity": activity,
                    },
                )
    return doc.doc
