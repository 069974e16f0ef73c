"""What a caller may see: the one definition of team scoping every route and query applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from controller.auth.principal import Principal, current
from controller.store.auth_schema import ArtifactGrantRow
from controller.store.lease_schema import LeaseRow
from controller.store.schema import ArtifactRow, RunRow, TaskRow

Column = InstrumentedAttribute[str] | ColumnElement[str]


@dataclass(frozen=True)
class Scope:
    """The runs a caller may see: those of one team, or every run (`team` None, an admin)."""

    team: str | None

    @classmethod
    def of(cls, principal: Principal) -> Scope:
        return cls(None if principal.is_admin else principal.team)

    @classmethod
    def current(cls) -> Scope:
        """The scope of the request being served (everything with auth off: the local admin)."""
        return cls.of(current())

    @classmethod
    def everything(cls) -> Scope:
        """For the controller's own work (benchmarks, maintenance), never for a request."""
        return cls(None)

    def sees(self, team: str) -> bool:
        return self.team is None or team == self.team

    def run_ids(self) -> Select[Any]:
        return select(RunRow.id).where(RunRow.team == self.team)

    def runs(self, run_id: Column) -> ColumnElement[bool]:
        """RUN_ID names a run this scope sees: the filter every lineage query applies."""
        return true() if self.team is None else run_id.in_(self.run_ids())

    def usable(self) -> ColumnElement[bool]:
        """Artifact rows a task of this scope may name as an input: its own, or granted."""
        if self.team is None:
            return true()
        granted = select(ArtifactGrantRow.sha256).where(
            ArtifactGrantRow.team == self.team, ArtifactGrantRow.revoked_at.is_(None)
        )
        return or_(self.runs(ArtifactRow.run_id), ArtifactRow.sha256.in_(granted))

    # -- one id at a time (the path of a request) ------------------------------------------
    def sees_run(self, session: Session, run_id: str) -> bool:
        row = session.get(RunRow, run_id)
        return row is not None and self.sees(row.team)

    def sees_task(self, session: Session, task_id: str) -> bool:
        row = session.get(TaskRow, task_id)
        return row is not None and self.sees(row.team)

    def sees_artifact(self, session: Session, sha256: str) -> bool:
        """An artifact some run in scope stored (a grant lets a team use it, not browse it)."""
        found = session.scalar(
            select(ArtifactRow.id)
            .where(
                ArtifactRow.sha256 == sha256.removeprefix("sha256:"), self.runs(ArtifactRow.run_id)
            )
            .limit(1)
        )
        return found is not None

    def sees_lease(self, session: Session, lease_id: str) -> bool:
        if not lease_id.isdigit():
            return True  # not an id at all: validation answers 422
        row = session.get(LeaseRow, int(lease_id)) if _fits(lease_id) else None
        return row is not None and self.sees(row.team)

    def sees_share(self, session: Session, share_id: str) -> bool:
        """A grant this scope's team made or received."""
        if not share_id.isdigit():
            return True  # not an id at all: validation answers 422
        row = session.get(ArtifactGrantRow, int(share_id)) if _fits(share_id) else None
        return row is not None and (self.sees(row.owner_team) or self.sees(row.team))


def _fits(digits: str) -> bool:
    """A decimal id the store's 64-bit integer keys can hold (a longer one is no row's)."""
    return int(digits) < 2**63
