"""Artifact grants: a team lets another team name one of its artifacts as a task input.

Granting and revoking are audited in the hash-chained audit log, in the transaction that
changes the grant. A grant covers new submissions only: a task submitted while it was
active keeps the input it resolved then.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from controller.auth.principal import Principal
from controller.auth.scope import Scope
from controller.errors import Forbidden, InvalidInput, NotFound
from controller.store.auth_schema import ArtifactGrantRow
from controller.store.database import Database
from controller.store.schema import AuditRow


class ShareCreate(BaseModel):
    """Let TEAM name the artifact SHA256 (one the caller's team stored) as a task input."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^(sha256:)?[0-9a-f]{64}$")
    team: str = Field(min_length=1, max_length=128)


class Share(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    owner_team: str
    team: str
    granted_by: str
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None


def _who(principal: Principal) -> str:
    return f"{principal.name}@{principal.team}"


def _audit(session: Session, principal: Principal, action: str, row: ArtifactGrantRow) -> None:
    session.add(
        AuditRow(
            actor=_who(principal),
            action=action,
            target=f"artifact:{row.sha256}",
            detail={"share_id": row.id, "owner_team": row.owner_team, "team": row.team},
        )
    )


def grant(db: Database, principal: Principal, request: ShareCreate) -> tuple[Share, bool]:
    """(the grant, created); granting what is already granted returns the active grant."""
    sha = request.sha256.removeprefix("sha256:")
    owner = Scope(principal.team)  # an admin, too, shares only what its own team stored
    with db.write() as session:
        if not owner.sees_artifact(session, sha):
            raise InvalidInput(["sha256"], f"no stored artifact has sha256 {sha}")
        if request.team == principal.team:
            raise InvalidInput(["team"], "the team that stored an artifact may use it already")
        row = session.scalar(
            select(ArtifactGrantRow).where(
                ArtifactGrantRow.sha256 == sha,
                ArtifactGrantRow.owner_team == principal.team,
                ArtifactGrantRow.team == request.team,
                ArtifactGrantRow.revoked_at.is_(None),
            )
        )
        if row is not None:
            return Share.model_validate(row), False
        row = ArtifactGrantRow(
            sha256=sha,
            owner_team=principal.team,
            team=request.team,
            granted_by=_who(principal),
            created_at=datetime.now(UTC),
        )
        session.add(row)
        session.flush()  # the id, for the audit entry
        _audit(session, principal, "share.grant", row)
        return Share.model_validate(row), True


def shares(db: Database, scope: Scope, active_only: bool) -> list[Share]:
    """Grants the scope's team made or received (every grant for an admin), newest first."""
    query = select(ArtifactGrantRow).order_by(ArtifactGrantRow.id.desc())
    if scope.team is not None:
        query = query.where(
            or_(ArtifactGrantRow.owner_team == scope.team, ArtifactGrantRow.team == scope.team)
        )
    if active_only:
        query = query.where(ArtifactGrantRow.revoked_at.is_(None))
    with db.read() as session:
        return [Share.model_validate(r) for r in session.scalars(query)]


def revoke(db: Database, principal: Principal, share_id: int) -> Share:
    """End a grant (its owning team or an admin); revoking twice changes nothing."""
    with db.write() as session:
        row = session.get(ArtifactGrantRow, share_id)
        if row is None:
            raise NotFound(f"share {share_id} does not exist")
        if row.owner_team != principal.team and not principal.is_admin:
            raise Forbidden(f"only team {row.owner_team!r}, which made the grant, may revoke it")
        if row.revoked_at is None:
            row.revoked_at, row.revoked_by = datetime.now(UTC), _who(principal)
            _audit(session, principal, "share.revoke", row)
        return Share.model_validate(row)
