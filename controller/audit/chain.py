"""Hash chains over append-only tables (audit_log, lineage_events).

Each new row gets the next sequence number of its chain, the previous row's hash, and its
own hash = sha256(prev_hash + canonical JSON of its content). The head of each chain is a
row in `chain_heads`, read-locked for the rest of the transaction (SQLite: the BEGIN
IMMEDIATE write lock; PostgreSQL: SELECT ... FOR UPDATE), so two writers can never both
extend the chain from the same head. An edited row no longer matches its hash; a deleted
row leaves a gap in the sequence or a broken prev_hash link; `verify()` finds both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from controller.store.chain_schema import ChainHeadRow
from controller.store.schema import AuditRow, LineageEventRow

GENESIS = "0" * 64
CHAINED: dict[type[Any], tuple[str, tuple[str, ...]]] = {
    AuditRow: ("audit", ("actor", "action", "target", "detail", "source", "created_at")),
    LineageEventRow: ("lineage", ("run_id", "task_id", "type", "payload", "created_at")),
}


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def content_hash(prev_hash: str, row: Any, fields: tuple[str, ...]) -> str:
    content = {name: _canonical(getattr(row, name)) for name in fields}
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def _head(session: Session, chain: str) -> ChainHeadRow:
    head = session.scalar(select(ChainHeadRow).where(ChainHeadRow.chain == chain).with_for_update())
    if head is None:
        head = ChainHeadRow(chain=chain, seq=0, hash=GENESIS, updated_at=datetime.now(UTC))
        session.add(head)
    return head


def _link(session: Session, _context: Any, _instances: Any) -> None:
    for row in [obj for obj in session.new if type(obj) in CHAINED]:
        chain, fields = CHAINED[type(row)]
        if row.created_at is None:
            row.created_at = datetime.now(UTC)
        with session.no_autoflush:
            head = _head(session, chain)
        row.chain_seq = head.seq + 1
        row.prev_hash = head.hash
        row.hash = content_hash(head.hash, row, fields)
        head.seq, head.hash, head.updated_at = row.chain_seq, row.hash, datetime.now(UTC)


def install() -> None:
    """Chain every AuditRow and LineageEventRow flushed by any session."""
    if not event.contains(Session, "before_flush", _link):
        event.listen(Session, "before_flush", _link)


@dataclass
class Finding:
    chain: str
    seq: int
    problem: str


def verify(session: Session) -> tuple[dict[str, int], list[Finding]]:
    """Walk every chain; return (rows checked per chain, findings)."""
    checked: dict[str, int] = {}
    findings: list[Finding] = []
    for model, (chain, fields) in CHAINED.items():
        expected_prev, expected_seq = GENESIS, 1
        count = 0
        rows: list[Any] = list(session.scalars(select(model).order_by(model.chain_seq)))
        for row in rows:
            count += 1
            if row.chain_seq != expected_seq:
                findings.append(
                    Finding(
                        chain, expected_seq, f"entries {expected_seq}..{row.chain_seq - 1} deleted"
                    )
                )
            if row.prev_hash != expected_prev:
                findings.append(
                    Finding(
                        chain,
                        row.chain_seq,
                        "link to the previous entry broken (entry deleted or edited before it)",
                    )
                )
            if content_hash(row.prev_hash, row, fields) != row.hash:
                findings.append(
                    Finding(
                        chain, row.chain_seq, "content edited after it was written (hash mismatch)"
                    )
                )
            expected_prev, expected_seq = row.hash, row.chain_seq + 1
        head = session.get(ChainHeadRow, chain)
        if head is not None and (head.seq != expected_seq - 1 or head.hash != expected_prev):
            findings.append(
                Finding(
                    chain,
                    head.seq,
                    f"last entries deleted: head is at "
                    f"{head.seq}, the table ends at {expected_seq - 1}",
                )
            )
        checked[chain] = count
    return checked, findings


def heads(session: Session) -> dict[str, dict[str, Any]]:
    return {
        h.chain: {"seq": h.seq, "hash": h.hash, "at": h.updated_at.isoformat()}
        for h in session.scalars(select(ChainHeadRow))
    }
