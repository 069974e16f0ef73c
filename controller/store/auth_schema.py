"""API tokens (only their hashes) and grants of artifacts from one team to another."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.schema import Base, UtcDateTime


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    team: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ArtifactGrantRow(Base):
    """A team's grant to another team: it may name the artifact SHA256 as a task input."""

    __tablename__ = "artifact_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    owner_team: Mapped[str] = mapped_column(String(128))
    team: Mapped[str] = mapped_column(String(128))
    granted_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (Index("ix_artifact_grants_sha256_team", "sha256", "team"),)
