"""The look-up box: one string read as every identity it could be, answered by lineage."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from controller.auth.scope import Scope
from controller.errors import InvalidInput, NotFound
from controller.lineage.graph import LineageGraph
from controller.store.schema import ArtifactRow, RunRow

HEX = re.compile(r"^[0-9a-f]{6,64}$")


class Answer(BaseModel):
    kind: str  # artifact | uri | commit | dataset | model | mlflow_run
    key: str
    produced_by: list[dict[str, Any]] = []
    used_by: list[dict[str, Any]] = []
    runs: list[str] = []


def readings(query: str) -> list[tuple[str, str]]:
    """(lookup key, value) pairs QUERY could mean, most specific first."""
    q = query.strip()
    if "://" in q:
        return [("uri", q)]
    if q.startswith("sha256:"):
        return [("sha256", q[7:].lower())]
    if "@" in q:
        return [("dataset", q)]
    if HEX.match(q.lower()):
        return [("sha256", q.lower()), ("commit", q.lower()), ("mlflow_run_id", q.lower())]
    if "/" in q:
        return [("model", q.removeprefix("models:/"))]
    return [("mlflow_run_id", q)]


def look_up(graph: LineageGraph, query: str) -> list[Answer]:
    """Every reading of QUERY that names something the caller's team may see."""
    answers = []
    for key, value in readings(query):
        try:
            answer = _answer(graph, key, value)
        except (NotFound, InvalidInput):
            continue
        if answer and (answer.produced_by or answer.used_by):
            answers.append(_visible(graph, answer))
    return [a for a in answers if a.produced_by or a.used_by]


def _answer(graph: LineageGraph, key: str, value: str) -> Answer | None:
    if key == "sha256":
        value = _full_sha(graph, value) or value
        if len(value) != 64:
            return None
    found = graph.lookup(**{key: value}, limit=100)
    kind = {"sha256": "artifact", "mlflow_run_id": "mlflow_run"}.get(key, key)
    if key == "mlflow_run_id":
        task = {k: found[k] for k in ("task_id", "task_name", "run_id", "status")}
        return Answer(kind=kind, key=value, produced_by=[task])
    if key == "dataset":
        return Answer(kind=kind, key=value, used_by=found["items"])
    produced = found.get("produced_by") or found.get("registered_by") or []
    return Answer(kind=kind, key=value, produced_by=produced, used_by=found["used_by"])


def _full_sha(graph: LineageGraph, prefix: str) -> str | None:
    with graph.db.read() as session:
        return session.scalar(
            select(ArtifactRow.sha256).where(ArtifactRow.sha256.startswith(prefix)).limit(1)
        )


def _visible(graph: LineageGraph, answer: Answer) -> Answer:
    """ANSWER without tasks of runs the caller may not see (the graph scopes most of it)."""
    rows = answer.produced_by + answer.used_by
    run_ids = sorted({str(r["run_id"]) for r in rows if r.get("run_id")})
    scope = Scope.current()
    with graph.db.read() as session:
        found = session.execute(select(RunRow.id, RunRow.team).where(RunRow.id.in_(run_ids)))
        teams = {str(row[0]): str(row[1]) for row in found}
    seen = {r for r in run_ids if scope.sees(teams.get(r, ""))}
    return answer.model_copy(
        update={
            "produced_by": [r for r in answer.produced_by if r.get("run_id") in seen],
            "used_by": [r for r in answer.used_by if r.get("run_id") in seen],
            "runs": sorted(seen),
        }
    )
