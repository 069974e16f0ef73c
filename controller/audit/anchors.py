"""Anchors: chain heads copied to the archive, so a rewrite of the whole table shows too.

Someone able to edit the database could recompute every hash after an edit; an anchor
written earlier to the object store (ideally one they do not control, e.g. an S3 bucket with
object lock) still holds the old head. The anchors' URIs are listed in controller_state.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.audit.chain import CHAINED, heads
from controller.ports import ArtifactStore
from controller.store.database import Database
from controller.store.schema import ControllerStateRow

STATE_KEY = "anchors"


def write_anchor(db: Database, store: ArtifactStore) -> str:
    """Store the current chain heads as anchors/<time>.json; return its URI."""
    with db.read() as session:
        current = heads(session)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "anchor.json"
        path.write_text(json.dumps({"at": stamp, "heads": current}, sort_keys=True))
        uri = store.put_file(path, key=f"anchors/{stamp}.json").uri
    with db.write() as session:
        state = session.get(ControllerStateRow, STATE_KEY)
        if state is None:
            state = ControllerStateRow(
                key=STATE_KEY, value={"uris": []}, updated_at=datetime.now(UTC)
            )
            session.add(state)
        state.value = {"uris": [*state.value.get("uris", []), uri]}
        state.updated_at = datetime.now(UTC)
    return uri


def anchor_uris(session: Session) -> list[str]:
    state = session.get(ControllerStateRow, STATE_KEY)
    return list(state.value.get("uris", [])) if state else []


def check_anchors(session: Session, store: ArtifactStore) -> list[str]:
    """Every anchored (chain, seq, hash) must still be the row with that seq."""
    problems: list[str] = []
    models = {chain: model for model, (chain, _) in CHAINED.items()}
    for uri in anchor_uris(session):
        if not store.exists(uri):
            problems.append(f"anchor {uri} is missing from the archive")
            continue
        anchor: dict[str, Any] = json.loads(store.open_bytes(uri))
        for chain, head in anchor["heads"].items():
            if head["seq"] == 0 or chain not in models:
                continue
            model = models[chain]
            row = session.scalar(select(model).where(model.chain_seq == head["seq"]))
            if row is None:
                problems.append(f"{chain} entry {head['seq']} anchored at {anchor['at']} is gone")
            elif row.hash != head["hash"]:
                problems.append(
                    f"{chain} entry {head['seq']} differs from its anchor of "
                    f"{anchor['at']} (the chain was rewritten)"
                )
    return problems
