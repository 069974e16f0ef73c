"""Lineage graph, look-ups, diff, reproduction, OpenLineage, and PROV-JSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from controller.api import responses as out
from controller.api.contract import errors
from controller.auth.scope import Scope
from controller.core.service import ControllerService
from controller.lineage import nodes, openlineage, prov
from controller.lineage.diff import diff_runs
from controller.lineage.graph import LineageGraph
from controller.lineage.reproduce import Reproducer, compare

NODE_PATTERN = nodes.PATTERN  # the rule NodeId.parse (graph.check_node) applies
Depth = Annotated[int, Query(ge=1, le=50, description="how many edges away at most")]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(max_length=1024, description="next_cursor of a page")]
Node = Annotated[
    str,
    Query(
        min_length=3,
        max_length=700,
        pattern=NODE_PATTERN,
        description="data:<path>@<md5>, task:<id>, artifact:<sha256>, "
        "model:<name>/<version>, commit:<sha>, service:<task id>",
    ),
]


def build_router(svc: ControllerService) -> APIRouter:

    def graph() -> LineageGraph:
        return LineageGraph(svc.db, Scope.current())  # the caller's runs only

    v1 = APIRouter(prefix="/v1", tags=["lineage"])

    def walk(
        direction: Literal["upstream", "downstream"],
        node: str,
        depth: int,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        return graph().walk(node, direction, depth, limit, cursor)

    @v1.get("/lineage/upstream", response_model=out.Walk)
    def upstream(
        node: Node, depth: Depth = 10, limit: Limit = 100, cursor: Cursor = None
    ) -> dict[str, Any]:
        """What NODE came from, nearest first."""
        return walk("upstream", node, depth, limit, cursor)

    @v1.get("/lineage/downstream", response_model=out.Walk)
    def downstream(
        node: Node, depth: Depth = 10, limit: Limit = 100, cursor: Cursor = None
    ) -> dict[str, Any]:
        """What was made from NODE, nearest first."""
        return walk("downstream", node, depth, limit, cursor)

    @v1.get(
        "/lineage/lookup",
        response_model=out.Lookup,
        response_model_exclude_unset=True,
        responses=errors(404),
    )
    def lookup(
        sha256: str | None = None,
        uri: str | None = None,
        mlflow_run_id: str | None = None,
        model: Annotated[
            str | None, Query(description="name/version", pattern="^.+/[^/]+$")
        ] = None,
        commit: str | None = None,
        dataset: Annotated[str | None, Query(description="path@md5", pattern="^.+@[^@]+$")] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Exactly one of the keys: who produced / used it."""
        if dataset and cursor:
            path, _, md5 = dataset.rpartition("@")
            return graph().runs_using_dataset(path, md5, limit, cursor)
        return graph().lookup(
            sha256=sha256,
            uri=uri,
            mlflow_run_id=mlflow_run_id,
            model=model,
            commit=commit,
            dataset=dataset,
            limit=limit,
        )

    @v1.get("/runs/{a}/diff/{b}", response_model=out.RunDiff, responses=errors(404))
    def diff(a: str, b: str) -> dict[str, Any]:
        """Code, data, params, environment, metrics and outputs of two runs side by side."""
        return diff_runs(svc.db, a, b, svc.supervisor.tracking)

    @v1.post(
        "/runs/{run_id}/reproduce",
        status_code=201,
        response_model=out.Reproduction,
        responses=errors(404, 409),
    )
    def reproduce(run_id: str) -> dict[str, Any]:
        """A new run of the same tasks pinned to the recorded commit, data, image and params.

        409 names every input that can no longer be retrieved; nothing is created then.
        """
        return Reproducer(svc).reproduce(run_id)

    @v1.get(
        "/runs/{run_id}/reproduction",
        response_model=out.ReproductionComparison,
        responses=errors(404, 409),
    )
    def reproduction(run_id: str) -> dict[str, Any]:
        """A reproduction's outputs against its original's, by sha256 per (task, path)."""
        return compare(svc, run_id)

    @v1.get("/runs/{run_id}/openlineage", response_model=out.RunEvents, responses=errors(404))
    def run_openlineage(run_id: str) -> dict[str, Any]:
        return {"items": openlineage.run_events(svc.db, run_id)}

    @v1.get(
        "/runs/{run_id}/prov",
        response_model=out.ProvDocument,
        response_model_exclude_unset=True,
        responses=errors(404),
    )
    def run_prov(run_id: str) -> dict[str, Any]:
        return prov.run_document(svc.db, run_id)

    @v1.get("/runs/{run_id}/graph", response_model=out.RunGraph, responses=errors(404))
    def run_graph(run_id: str) -> dict[str, Any]:
        return graph().run_graph(run_id)

    return v1
