"""Short hashes in look-ups: a unique prefix (7+ hex digits) of a commit or a sha256."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.errors import InvalidInput, NotFound
from controller.store.lineage_schema import LineageEdgeRow
from controller.store.schema import ArtifactRow

MIN_PREFIX = 7
FULL = {"commit": 40, "sha256": 64}
HEX = re.compile(r"^[0-9a-f]+$")
SHOWN = 10


def _candidates(session: Session, scope: Scope, kind: str, prefix: str) -> list[str]:
    node = "commit:" if kind == "commit" else "artifact:"
    found = set(
        session.scalars(
            select(LineageEdgeRow.src)
            .distinct()
            .where(LineageEdgeRow.src.like(f"{node}{prefix}%"), scope.runs(LineageEdgeRow.run_id))
            .limit(SHOWN + 1)
        )
    )
    hashes = {s.removeprefix(node) for s in found}
    if kind == "sha256":
        hashes |= set(
            session.scalars(
                select(ArtifactRow.sha256)
                .distinct()
                .where(ArtifactRow.sha256.like(f"{prefix}%"), scope.runs(ArtifactRow.run_id))
                .limit(SHOWN + 1)
            )
        )
    return sorted(hashes)


def expand(session: Session, scope: Scope, kind: str, value: str) -> str:
    """VALUE in full: itself when full length, else the one recorded hash it starts."""
    short = value.removeprefix("sha256:").lower() if kind == "sha256" else value.lower()
    if len(short) == FULL[kind]:
        return short
    if not HEX.match(short) or len(short) < MIN_PREFIX or len(short) > FULL[kind]:
        raise InvalidInput(
            [kind],
            f"{value!r} is not a {kind} or a prefix of one: give "
            f"{MIN_PREFIX} to {FULL[kind]} hex digits",
        )
    found = _candidates(session, scope, kind, short)
    if not found:
        raise NotFound(f"no recorded {kind} starts with {short}")
    if len(found) > 1:
        listed = ", ".join(found[:SHOWN]) + (" and more" if len(found) > SHOWN else "")
        raise InvalidInput([kind], f"{short} is ambiguous: it starts {listed}; give more digits")
    return found[0]
