"""API tokens: shown once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlalchemy import select

from controller.auth.principal import ADMIN, MEMBER, Principal
from controller.errors import InvalidInput
from controller.store.auth_schema import ApiTokenRow
from controller.store.database import Database

PREFIX = "tct_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, name: str, team: str, role: str = MEMBER) -> str:
    if role not in (ADMIN, MEMBER):
        raise InvalidInput(["role"], f"role must be {ADMIN!r} or {MEMBER!r}, not {role!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    with db.write() as session:
        session.add(
            ApiTokenRow(
                name=name,
                team=team,
                role=role,
                token_hash=token_hash(token),
                created_at=datetime.now(UTC),
            )
        )
    return token


def verify_token(db: Database, token: str) -> Principal | None:
    digest = token_hash(token)
    with db.read() as session:
        row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest))
        if row is None or row.revoked_at is not None:
            return None
        # The lookup is by hash; compare again in constant time as a guard.
        if not hmac.compare_digest(row.token_hash, digest):
            return None
        return Principal(name=row.name, team=row.team, role=row.role)


def revoke_token(db: Database, name: str) -> int:
    with db.write() as session:
        rows = list(
            session.scalars(
                select(ApiTokenRow).where(
                    ApiTokenRow.name == name, ApiTokenRow.revoked_at.is_(None)
                )
            )
        )
        for row in rows:
            row.revoked_at = datetime.now(UTC)
        return len(rows)
