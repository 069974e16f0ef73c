"""What a queued task asks the admitter for, read from its spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.domain.spec import Resources


@dataclass(frozen=True)
class VolumeWant:
    claim: str
    mode: str  # rw | ro
    mount_path: str


@dataclass(frozen=True)
class Claims:
    gpu: int = 0
    gpu_flavor: str | None = None
    volumes: tuple[VolumeWant, ...] = ()
    cpu_milli: int | None = None
    memory_bytes: int | None = None

    @classmethod
    def of_spec(cls, spec: dict[str, Any]) -> Claims:
        res = Resources.model_validate(spec.get("resources") or {})
        return cls(
            gpu=res.gpu,
            gpu_flavor=res.gpu_flavor,
            volumes=tuple(VolumeWant(v.claim, v.mode, v.mount_path) for v in res.volumes),
            cpu_milli=None if res.cpu is None else round(res.cpu * 1000),
            memory_bytes=res.memory_bytes(),
        )

    @property
    def leases_anything(self) -> bool:
        return bool(self.gpu or self.volumes)

    def describe_gpu(self) -> str:
        return f"{self.gpu} gpu (flavor {self.gpu_flavor or 'any'})"
