"""Content-hash cache: a task whose every input is identical to a succeeded one may reuse it.

The key covers everything the lineage record says can change an output: the exact commit,
the DVC md5s, the sha256 of each upstream artifact, params, image, the environment's key
(its lock file's bytes, Python version, platform), public env and command.
Secret env values are never stored, so two tasks differing only in a secret share a key;
a task whose result depends on a secret should not ask for the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.domain.events import TaskCached
from controller.domain.launch import LaunchDocument
from controller.store.lineage_schema import LineageCacheRow
from controller.store.schema import ArtifactRow, LineageEventRow, TaskRow

KEY_VERSION = 1


def cache_key(
    spec: Mapping[str, Any],
    resolved: Mapping[str, Any],
    input_sha256: Iterable[tuple[str, str]],
) -> str:
    """sha256 over a canonical JSON of what determines the outputs.

    `input_sha256` is (workspace path, sha256) of every artifact the task reads.
    """
    material = {
        "v": KEY_VERSION,
        "commit": resolved.get("commit"),
        "data": sorted((d["path"], d["md5"]) for d in resolved.get("data", [])),
        "inputs": sorted(input_sha256),
        "params": spec.get("params", {}),
        "image": spec.get("image"),
        "env": spec.get("env", {}),
        "command": list(spec.get("command", [])),
        "outputs": sorted(spec.get("outputs", [])),
    }
    if spec.get("models"):  # only when declared: keys of tasks without models stay the same
        material["models"] = sorted(spec["models"])
    environment = resolved.get("environment") or {}
    if environment.get("key"):  # tasks resolved before environments keep their keys
        material["environment"] = environment["key"]
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheHit:
    key: str
    run_id: str
    task_id: str
    outputs: list[dict[str, Any]]


def lookup(
    session: Session, key: str, exclude_task: str | None = None, team: str | None = None
) -> CacheHit | None:
    """The newest succeeded task with KEY whose outputs are all still stored, or None.

    With TEAM, only that team's tasks: a cache hit hands over another task's outputs, which
    would let one team read another's artifacts without a grant.
    """
    rows = session.scalars(
        select(LineageCacheRow)
        .where(LineageCacheRow.cache_key == key)
        .order_by(LineageCacheRow.created_at.desc())
    )
    for row in rows:
        if row.task_id == exclude_task:
            continue
        task = session.get(TaskRow, row.task_id)
        if task is None or task.status != "succeeded" or team not in (None, task.team):
            continue
        artifacts = list(
            session.scalars(
                select(ArtifactRow)
                .where(ArtifactRow.task_id == row.task_id)
                .order_by(ArtifactRow.id)
            )
        )
        declared = set(task.spec.get("outputs", []))
        if not declared <= {a.path for a in artifacts} | _folders(artifacts, declared):
            continue
        return CacheHit(
            key=key,
            run_id=row.run_id,
            task_id=row.task_id,
            outputs=[
                {
                    "path": a.path,
                    "sha256": a.sha256,
                    "uri": a.uri,
                    "size": a.size,
                    "media_type": a.media_type,
                }
                for a in artifacts
            ],
        )
    return None


def _folders(artifacts: list[ArtifactRow], declared: set[str]) -> set[str]:
    """Declared folder outputs count as present when some artifact lies under them."""
    return {d for d in declared if any(a.path.startswith(d.rstrip("/") + "/") for a in artifacts)}


def record_hit(session: Session, task: TaskRow, hit: CacheHit) -> None:
    """Log the reuse in the append-only event log ("cached from run R")."""
    session.add(
        LineageEventRow.of(
            TaskCached(
                cache_key=hit.key,
                cached_from_run=hit.run_id,
                cached_from_task=hit.task_id,
                outputs=hit.outputs,
            ),
            task.run_id,
            task.id,
        )
    )


def key_of_launch(launch: LaunchDocument) -> str:
    """The key of a launch: its stored spec, resolution and resolved inputs."""
    spec = launch.spec.model_dump(mode="json")
    # Masked as the stored spec masks them, so this key equals the one the projection indexes.
    spec["env"] = launch.spec.public_env()
    return cache_key(
        spec, launch.resolved.model_dump(mode="json"), [(i.path, i.sha256) for i in launch.inputs]
    )
