"""The resource inventory: what the controller may lease, read from a YAML file.

    gpu_pools:                      # one pool = GPUs a task may get together (one node)
      - {name: gpu-worker, flavor: nvidia.com/gpu, count: 2}   # units gpu:gpu-worker:0..1
    volumes:                        # PVCs, unit volume:<claim>
      - {claim: datasets, access: RWX}
      - {claim: scratch, access: RWO}
    quotas:                         # per team, over the tasks it runs at once
      research: {cpu: 8, memory: 32Gi}

Access rules, the same ones the database enforces (see store/lease_schema.py):

* a GPU is exclusive: one task holds it;
* an RWO volume is exclusive whatever the mode asked (`ro` or `rw`): Kubernetes mounts it
  on one node, and we do not let two tasks share it;
* an RWX volume takes many `ro` readers at once, or one `rw` writer alone.

No file means the empty inventory: tasks that claim nothing are admitted as before, and a
task that claims a GPU or a volume waits with a reason that names the missing inventory.
Units that leave the file stay in the store with `in_inventory = false`: their leases run
to the end, and no new lease is granted on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.orm import Session

from controller.domain.spec import Resources
from controller.errors import InvalidInput
from controller.store.lease_schema import ResourceRow

_units = cast(Table, ResourceRow.__table__)
_ALL_UNITS = select(_units)
_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuPool(_Strict):
    name: str = Field(pattern=_NAME, max_length=200)
    flavor: str = Field(default="nvidia.com/gpu", min_length=1, max_length=128)
    count: int = Field(ge=0, le=4096)


class Volume(_Strict):
    claim: str = Field(pattern=_NAME, max_length=253)
    access: str = Field(default="RWO", pattern=r"^(RWO|RWX)$")


class Quota(_Strict):
    cpu: float | None = Field(default=None, ge=0)
    memory: str | None = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            Resources(memory=value)  # same syntax as a task's request
        return value

    @property
    def cpu_milli(self) -> int | None:
        return None if self.cpu is None else round(self.cpu * 1000)

    @property
    def memory_bytes(self) -> int | None:
        return Resources(memory=self.memory).memory_bytes()


@dataclass(frozen=True)
class Unit:
    """One leasable unit, as mirrored into the `resources` table."""

    name: str
    kind: str
    pool: str
    access: str
    flavor: str | None = None
    gpu_index: int | None = None
    cpu_milli: int | None = None
    memory_bytes: int | None = None


def gpu_unit(pool: str, index: int) -> str:
    return f"gpu:{pool}:{index}"


def volume_unit(claim: str) -> str:
    return f"volume:{claim}"


def quota_unit(team: str) -> str:
    return f"quota:{team}"


class Inventory(_Strict):
    gpu_pools: list[GpuPool] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    quotas: dict[str, Quota] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> Inventory:
        if path is None:
            return cls()
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            return cls.model_validate(raw)
        except OSError as exc:
            raise InvalidInput(["inventory_file"], f"cannot read {path}: {exc}") from exc
        except (yaml.YAMLError, ValidationError) as exc:
            message = f"{path} is not a valid inventory: {exc}"
            raise InvalidInput(["inventory_file"], message) from exc

    def never_fits(self, resources: Resources) -> list[tuple[list[str | int], str]]:
        """(field path, why) for each claim of RESOURCES this inventory can never grant.

        Checked at submit so such a task is refused instead of queued forever; a claim that
        fits but is held waits in the queue as before.
        """
        problems: list[tuple[list[str | int], str]] = []
        if resources.gpu:
            why = self._gpu_never_fits(resources.gpu, resources.gpu_flavor)
            if why:
                problems.append((["spec", "resources", "gpu"], why))
        claims = {v.claim: v for v in self.volumes}
        for index, volume in enumerate(resources.volumes):
            if volume.claim not in claims:
                have = ", ".join(f"{v.claim} ({v.access})" for v in self.volumes) or "none"
                problems.append(
                    (
                        ["spec", "resources", "volumes", index, "claim"],
                        f"volume claim {volume.claim!r} is not in the inventory (it has: {have})",
                    )
                )
        return problems

    def _gpu_never_fits(self, count: int, flavor: str | None) -> str | None:
        have = ", ".join(f"{p.name}: {p.count} x {p.flavor}" for p in self.gpu_pools if p.count)
        pools = [p for p in self.gpu_pools if p.count and flavor in (None, p.flavor)]
        kind = f"GPU of flavor {flavor}" if flavor else "GPU"
        if not pools:
            return f"no {kind} in the inventory (it has: {have or 'no GPUs'})"
        largest = max(p.count for p in pools)
        if count > largest:
            return f"{count} {kind}s on one node: the largest pool has {largest} (it has: {have})"
        return None

    def units(self) -> list[Unit]:
        units = [
            Unit(gpu_unit(p.name, i), "gpu", p.name, "RWO", flavor=p.flavor, gpu_index=i)
            for p in self.gpu_pools
            for i in range(p.count)
        ]
        units += [Unit(volume_unit(v.claim), "volume", v.claim, v.access) for v in self.volumes]
        units += [
            Unit(
                quota_unit(team),
                "quota",
                team,
                "quota",
                cpu_milli=q.cpu_milli,
                memory_bytes=q.memory_bytes,
            )
            for team, q in self.quotas.items()
        ]
        return units


def mirror(session: Session, inventory: Inventory, now: datetime) -> dict[str, Row[Any]]:
    """Make the `resources` table match the inventory, keeping the holder counters; return
    every unit's row as it is now.

    One Core SELECT when nothing changed (no ORM objects, whose identity map could also
    hand back rows gone stale after the admitter's compare-and-set), so the admitter calls
    it on every decision round: a restarted controller or an edited file is picked up
    without a separate step, and the round gets the unit states it needs from it anyway.
    """
    existing = _read_units(session)
    wanted = {u.name: u for u in inventory.units()}
    missing = [u for name, u in wanted.items() if name not in existing]
    changed = [
        u
        for name, u in wanted.items()
        if name in existing and _static(existing[name]) != _wanted_static(u)
    ]
    gone = [name for name, row in existing.items() if name not in wanted and row.in_inventory]
    if not (missing or changed or gone):
        return existing
    conn = session.connection()
    if missing:
        conn.execute(
            insert(_units),
            [
                {
                    "name": u.name,
                    "kind": u.kind,
                    "pool": u.pool,
                    "flavor": u.flavor,
                    "gpu_index": u.gpu_index,
                    "access": u.access,
                    "cpu_milli": u.cpu_milli,
                    "memory_bytes": u.memory_bytes,
                    "in_inventory": True,
                    "exclusive_holder": None,
                    "shared_holders": 0,
                    "updated_at": now,
                }
                for u in missing
            ],
        )
    for unit in changed:
        conn.execute(
            update(_units)
            .where(_units.c.name == unit.name)
            .values(
                flavor=unit.flavor,
                access=unit.access,
                cpu_milli=unit.cpu_milli,
                memory_bytes=unit.memory_bytes,
                in_inventory=True,
                updated_at=now,
            )
        )
    if gone:
        conn.execute(
            update(_units).where(_units.c.name.in_(gone)).values(in_inventory=False, updated_at=now)
        )
    return _read_units(session)


def _read_units(session: Session) -> dict[str, Row[Any]]:
    return {row.name: row for row in session.connection().execute(_ALL_UNITS)}


def _static(row: Row[Any]) -> tuple[Any, ...]:
    return (row.flavor, row.access, row.cpu_milli, row.memory_bytes, bool(row.in_inventory))


def _wanted_static(unit: Unit) -> tuple[Any, ...]:
    return (unit.flavor, unit.access, unit.cpu_milli, unit.memory_bytes, True)
