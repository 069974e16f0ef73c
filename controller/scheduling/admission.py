"""The admission port. The default admits every task at once (no shared resources)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from controller.domain.spec import Resources
from controller.store.schema import TaskRow


@dataclass
class Admission:
    admitted: bool
    reason: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    leases: list[dict[str, Any]] = field(default_factory=list)


class Admitter(Protocol):
    def admit(self, session: Session, queued: list[TaskRow]) -> dict[str, Admission]:
        """Decide, in one write transaction, which of the queued tasks may start now."""
        ...

    def release(self, session: Session, task_id: str, reason: str) -> None: ...

    def heartbeat(self, session: Session, task_ids: list[str]) -> None: ...

    def leases_of(self, session: Session, task_id: str) -> list[dict[str, Any]]: ...

    def sync(self, session: Session) -> None:
        """Mirror the inventory into the store (at start-up; admission rounds do it too)."""
        ...

    def never_fits(self, resources: Resources) -> list[tuple[list[str | int], str]]:
        """(field path, why) for each claim no admission can ever grant."""
        ...


class AdmitAll:
    def admit(self, session: Session, queued: list[TaskRow]) -> dict[str, Admission]:
        return {row.id: Admission(True) for row in queued}

    def release(self, session: Session, task_id: str, reason: str) -> None:
        return None

    def heartbeat(self, session: Session, task_ids: list[str]) -> None:
        return None

    def leases_of(self, session: Session, task_id: str) -> list[dict[str, Any]]:
        return []

    def sync(self, session: Session) -> None:
        return None

    def never_fits(self, resources: Resources) -> list[tuple[list[str | int], str]]:
        return []
