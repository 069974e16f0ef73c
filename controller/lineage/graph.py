"""Queries over the lineage graph: walks up and down, look-ups, and which runs used what.

Node ids: `data:<path>@<md5>`, `commit:<sha>`, `task:<id>`, `artifact:<sha256>`,
`model:<name>/<version>`, `service:<task id>`, `env:<key>`. Edges: commit -code-> task,
env -ran_in-> task, data/artifact/model -used-> task, task -generated-> artifact,
task -registered-> model, task -serves-> service, task -cached-> task. Every query is
indexed, and walks go level by level and stop once the page is full, so cost follows the
answer, not the store.

Every query applies the graph's `Scope` (controller/auth/scope.py) in SQL: an edge counts
only when the run that recorded it is in scope, and a task node only when its task is, so
a caller's walks and look-ups never reach another team's runs.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.errors import InvalidInput, NotFound
from controller.lineage import nodes, prefixes
from controller.lineage.projection import catch_up
from controller.store.database import Database
from controller.store.lineage_schema import LineageEdgeRow
from controller.store.run_rows import run_tasks
from controller.store.schema import ArtifactRow, TaskRow

Direction = Literal["upstream", "downstream"]
MAX_DEPTH = 50
_CHUNK = 500  # IN-list size: well under every backend's bound-parameter limit

_WALK = {
    # A walk follows edges against (upstream) or along (downstream) their direction.
    "upstream": ("dst", "src"),
    "downstream": ("src", "dst"),
}


def _encode(payload: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode(cursor: str) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise InvalidInput(["cursor"], "not a cursor this API returned") from exc
    if not isinstance(value, list):
        raise InvalidInput(["cursor"], "not a cursor this API returned")
    return value


def check_node(node: str) -> str:
    try:
        return str(nodes.NodeId.parse(node))
    except ValueError:
        raise InvalidInput(
            ["node"],
            f"{node!r} is not a node id: use one of " + ", ".join(f"{k}:…" for k in nodes.NodeKind),
        ) from None


def hidden_tasks(session: Session, scope: Scope, ids: set[str]) -> set[str]:
    """The `task:` nodes among IDS whose task is outside SCOPE (reached by a cache edge)."""
    tasks = nodes.keys_of(nodes.NodeKind.TASK, ids)
    if scope.team is None or not tasks:
        return set()
    seen = set(
        session.scalars(select(TaskRow.id).where(TaskRow.id.in_(tasks), scope.runs(TaskRow.run_id)))
    )
    return {nodes.task(t) for t in tasks if t not in seen}


def _breadth_first(
    session: Session,
    scope: Scope,
    node: str,
    direction: Direction,
    depth: int,
    after: tuple[int, str],
    want: int,
) -> list[tuple[str, int]]:
    """(node, depth) past AFTER in (depth, node) order, at most WANT of them.

    Level by level, each level one indexed IN query per chunk of the frontier; a node is
    reported at the first level that reaches it (its shortest distance). The walk stops as
    soon as the page is full, so a wide fan-out costs the levels the page needs, not the
    whole reachable graph.
    """
    here, there = (getattr(LineageEdgeRow, c) for c in _WALK[direction])
    seen = {node}
    frontier = [node]
    found: list[tuple[str, int]] = []
    for level in range(1, depth + 1):
        reached: set[str] = set()
        for start in range(0, len(frontier), _CHUNK):
            chunk = frontier[start : start + _CHUNK]
            reached.update(
                session.scalars(
                    select(there)
                    .where(here.in_(chunk), scope.runs(LineageEdgeRow.run_id))
                    .distinct()
                )
            )
        reached -= seen
        reached -= hidden_tasks(session, scope, reached)
        if not reached:
            break
        seen |= reached
        found += [(n, level) for n in sorted(reached) if (level, n) > after]
        if len(found) >= want:
            break
        frontier = sorted(reached)
    return found[:want]


class LineageGraph:
    def __init__(self, db: Database, scope: Scope) -> None:
        self.db = db
        self.scope = scope

    def refresh(self) -> None:
        catch_up(self.db)

    # -- walks ----------------------------------------------------------------------------
    def walk(
        self,
        node: str,
        direction: Direction,
        depth: int = 10,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Nodes reachable from NODE, nearest first, a page at a time."""
        check_node(node)
        depth = max(1, min(depth, MAX_DEPTH))
        here, there = (getattr(LineageEdgeRow, c) for c in _WALK[direction])
        after: tuple[int, str] = (-1, "")
        if cursor:
            raw = _decode(cursor)
            if len(raw) != 2 or not isinstance(raw[0], int) or not isinstance(raw[1], str):
                raise InvalidInput(["cursor"], "not a cursor this API returned")
            after = (raw[0], raw[1])
        self.refresh()
        with self.db.read() as session:
            rows = _breadth_first(session, self.scope, node, direction, depth, after, limit + 1)
            page = rows[:limit]
            ids = [r[0] for r in page]
            described = self._describe(session, ids)
            known = set(ids) | {node}
            # Edges among the page and the start node, found from the side the walk came
            # from (indexed), both ends then checked against the page.
            edges = (
                [
                    {"from": e.src, "to": e.dst, "kind": e.kind, "path": e.path or None}
                    for e in session.scalars(
                        select(LineageEdgeRow).where(
                            here.in_(known), there.in_(ids), self.scope.runs(LineageEdgeRow.run_id)
                        )
                    )
                ]
                if ids
                else []
            )
        items = [{**described[str(n)], "depth": d} for n, d in page]
        last = page[-1] if page else None
        return {
            "node": node,
            "direction": direction,
            "depth": depth,
            "items": items,
            "edges": edges,
            "next_cursor": _encode([last[1], last[0]]) if len(rows) > limit and last else None,
        }

    def _describe(self, session: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        task_ids = nodes.keys_of(nodes.NodeKind.TASK, ids)
        tasks = (
            {
                t.id: t
                for t in session.scalars(
                    select(TaskRow).where(TaskRow.id.in_(task_ids), self.scope.runs(TaskRow.run_id))
                )
            }
            if task_ids
            else {}
        )
        shas = nodes.keys_of(nodes.NodeKind.ARTIFACT, ids)
        artifacts: dict[str, ArtifactRow] = {}
        if shas:
            for a in session.scalars(
                select(ArtifactRow)
                .where(ArtifactRow.sha256.in_(shas), self.scope.runs(ArtifactRow.run_id))
                .order_by(ArtifactRow.id)
            ):
                artifacts.setdefault(a.sha256, a)
        for node in ids:
            kind, _, ident = node.partition(":")
            item: dict[str, Any] = {"id": node, "kind": kind, "label": ident}
            if kind == "task" and ident in tasks:
                task = tasks[ident]
                item.update(
                    label=task.name,
                    run_id=task.run_id,
                    status=task.status,
                    mlflow_run_id=task.mlflow_run_id,
                    mlflow_experiment_id=task.mlflow_experiment_id,
                )
            elif kind == "artifact" and ident in artifacts:
                art = artifacts[ident]
                item.update(label=art.path, uri=art.uri, size=art.size, run_id=art.run_id)
            elif kind == "data":
                path, _, md5 = ident.rpartition("@")
                item.update(label=path, path=path, md5=md5)
            out[node] = item
        return out

    # -- look-ups -------------------------------------------------------------------------
    def runs_using_dataset(
        self, path: str, md5: str, limit: int = 100, cursor: str | None = None
    ) -> dict[str, Any]:
        """Runs (and their tasks) that read dataset version PATH@MD5, oldest run id first."""
        self.refresh()
        query = select(LineageEdgeRow.run_id, LineageEdgeRow.task_id).where(
            LineageEdgeRow.src == nodes.data(path, md5),
            LineageEdgeRow.kind == "used",
            self.scope.runs(LineageEdgeRow.run_id),
        )
        if cursor:
            after_run, after_task = _decode(cursor)
            query = query.where(
                or_(
                    LineageEdgeRow.run_id > after_run,
                    and_(LineageEdgeRow.run_id == after_run, LineageEdgeRow.task_id > after_task),
                )
            )
        query = query.order_by(LineageEdgeRow.run_id, LineageEdgeRow.task_id).limit(limit + 1)
        with self.db.read() as session:
            rows = session.execute(query).all()
        page = rows[:limit]
        return {
            "dataset": {"path": path, "md5": md5, "node": nodes.data(path, md5)},
            "items": [{"run_id": r, "task_id": t} for r, t in page],
            "next_cursor": _encode(list(page[-1])) if len(rows) > limit else None,
        }

    def producers_of(self, sha256: str) -> list[dict[str, Any]]:
        """Every task that produced an artifact with this content (cache hits included)."""
        with self.db.read() as session:
            rows = session.execute(
                select(ArtifactRow, TaskRow)
                .join(TaskRow, TaskRow.id == ArtifactRow.task_id)
                .where(ArtifactRow.sha256 == sha256, self.scope.runs(ArtifactRow.run_id))
                .order_by(ArtifactRow.id)
            ).all()
            return [
                {
                    "task_id": t.id,
                    "task_name": t.name,
                    "run_id": a.run_id,
                    "path": a.path,
                    "uri": a.uri,
                    "size": a.size,
                    "mlflow_run_id": t.mlflow_run_id,
                    "commit": (t.resolved or {}).get("commit"),
                }
                for a, t in rows
            ]

    def lookup(
        self,
        *,
        sha256: str | None = None,
        uri: str | None = None,
        mlflow_run_id: str | None = None,
        model: str | None = None,
        commit: str | None = None,
        dataset: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        given = {
            k: v
            for k, v in {
                "sha256": sha256,
                "uri": uri,
                "mlflow_run_id": mlflow_run_id,
                "model": model,
                "commit": commit,
                "dataset": dataset,
            }.items()
            if v
        }
        if len(given) != 1:
            raise InvalidInput(
                ["query"],
                "give exactly one of sha256, uri, mlflow_run_id, "
                f"model, commit, dataset (got {sorted(given) or 'none'})",
            )
        key, value = next(iter(given.items()))
        if key in prefixes.FULL:
            self.refresh()
            with self.db.read() as session:
                value = prefixes.expand(session, self.scope, key, value)
        if key == "sha256":
            sha = value.removeprefix("sha256:")
            found = self.producers_of(sha)
            return {
                "node": nodes.artifact(sha),
                "produced_by": found,
                "used_by": self._tasks_from(nodes.artifact(sha), limit),
            }
        if key == "uri":
            with self.db.read() as session:
                stored = session.scalar(
                    select(ArtifactRow.sha256).where(
                        ArtifactRow.uri == value, self.scope.runs(ArtifactRow.run_id)
                    )
                )
            if stored is None:
                raise NotFound(f"no artifact is stored at {value}")
            return {
                "node": nodes.artifact(stored),
                "produced_by": self.producers_of(stored),
                "used_by": self._tasks_from(nodes.artifact(stored), limit),
            }
        if key == "mlflow_run_id":
            with self.db.read() as session:
                task = session.scalar(
                    select(TaskRow).where(
                        TaskRow.mlflow_run_id == value, self.scope.runs(TaskRow.run_id)
                    )
                )
                if task is None:
                    raise NotFound(f"no task has MLflow run {value}")
                return {
                    "node": nodes.task(task.id),
                    "task_id": task.id,
                    "task_name": task.name,
                    "run_id": task.run_id,
                    "status": task.status,
                }
        if key == "model":
            name, _, version = value.rpartition("/")
            if not name or not version:
                raise InvalidInput(["model"], f"{value!r} must read name/version")
            node = nodes.model(name, version)
            return {
                "node": node,
                "registered_by": self._tasks_to(node, limit),
                "used_by": self._tasks_from(node, limit),
            }
        if key == "commit":
            node = nodes.commit(value)
            return {"node": node, "used_by": self._tasks_from(node, limit)}
        path, _, md5 = value.rpartition("@")
        if not path or not md5:
            raise InvalidInput(["dataset"], f"{value!r} must read path@md5")
        return self.runs_using_dataset(path, md5, limit)

    def _tasks_from(self, node: str, limit: int) -> list[dict[str, Any]]:
        self.refresh()
        with self.db.read() as session:
            rows = session.execute(
                select(LineageEdgeRow.run_id, LineageEdgeRow.task_id, LineageEdgeRow.path)
                .where(LineageEdgeRow.src == node, self.scope.runs(LineageEdgeRow.run_id))
                .order_by(LineageEdgeRow.id)
                .limit(limit)
            ).all()
        return [{"run_id": r, "task_id": t, "path": p or None} for r, t, p in rows]

    def _tasks_to(self, node: str, limit: int) -> list[dict[str, Any]]:
        self.refresh()
        with self.db.read() as session:
            rows = session.execute(
                select(LineageEdgeRow.run_id, LineageEdgeRow.task_id)
                .where(LineageEdgeRow.dst == node, self.scope.runs(LineageEdgeRow.run_id))
                .order_by(LineageEdgeRow.id)
                .limit(limit)
            ).all()
        return [{"run_id": r, "task_id": t} for r, t in rows]

    # -- a run's own graph ----------------------------------------------------------------
    def run_graph(self, run_id: str) -> dict[str, Any]:
        """Every node and edge of one run, for the UI, OpenLineage and PROV."""
        self.refresh()
        with self.db.read() as session:
            if not self.scope.sees_run(session, run_id):
                raise NotFound(f"run {run_id} does not exist")
            edges = list(
                session.scalars(
                    select(LineageEdgeRow)
                    .where(LineageEdgeRow.run_id == run_id)
                    .order_by(LineageEdgeRow.id)
                )
            )
            hidden = hidden_tasks(session, self.scope, {e.src for e in edges})
            edges = [e for e in edges if e.src not in hidden]
            ids = sorted({e.src for e in edges} | {e.dst for e in edges})
            tasks = run_tasks(session, run_id)
            ids = sorted(set(ids) | {nodes.task(t.id) for t in tasks})
            described = self._describe(session, ids)  # not `nodes`: the module of node ids
        return {
            "run_id": run_id,
            "nodes": [described[i] for i in ids],
            "edges": [
                {"from": e.src, "to": e.dst, "kind": e.kind, "path": e.path or None} for e in edges
            ],
        }
