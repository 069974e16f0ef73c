"""The audit and lineage logs are hash chains: edits, deletions and rewrites are detected."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from controller import backends
from controller.audit.anchors import check_anchors, write_anchor
from controller.audit.chain import verify
from controller.config import Settings
from controller.store.database import Database
from controller.store.schema import AuditRow, LineageEventRow


def populated(tmp_path: Path) -> tuple[Settings, Database]:
    settings = Settings(home=tmp_path / "home")
    db = Database(settings.store_url)
    db.migrate()
    for i in range(5):
        with db.write() as session:
            session.add(
                AuditRow(
                    actor="alice@red", action="POST", target=f"/v1/runs/{i}", detail={"status": 201}
                )
            )
            session.add(
                LineageEventRow(
                    run_id=f"run_{i}", task_id=None, type="run.created", payload={"i": i}
                )
            )
    return settings, db


def sql(settings: Settings, statement: str) -> None:
    with sqlite3.connect(settings.home / "tracectl.db") as conn:
        conn.execute(statement)


def test_untouched_chains_verify(tmp_path: Path) -> None:
    _, db = populated(tmp_path)
    with db.read() as session:
        checked, findings = verify(session)
        seqs = list(session.scalars(select(AuditRow.chain_seq).order_by(AuditRow.id)))
    assert checked == {"audit": 5, "lineage": 5} and findings == []
    assert seqs == [1, 2, 3, 4, 5]


def test_an_edited_audit_row_is_detected(tmp_path: Path) -> None:
    settings, db = populated(tmp_path)
    sql(settings, "UPDATE audit_log SET actor = 'mallory@red' WHERE chain_seq = 3")
    with db.read() as session:
        _, findings = verify(session)
    assert [(f.chain, f.seq) for f in findings] == [("audit", 3)]
    assert "edited" in findings[0].problem


def test_a_deleted_lineage_event_is_detected(tmp_path: Path) -> None:
    settings, db = populated(tmp_path)
    sql(settings, "DELETE FROM lineage_events WHERE chain_seq = 2")
    with db.read() as session:
        _, findings = verify(session)
    assert {f.chain for f in findings} == {"lineage"}
    assert any("deleted" in f.problem for f in findings)


def test_truncating_the_tail_is_detected(tmp_path: Path) -> None:
    settings, db = populated(tmp_path)
    sql(settings, "DELETE FROM audit_log WHERE chain_seq = 5")
    with db.read() as session:
        _, findings = verify(session)
    assert any("last entries deleted" in f.problem for f in findings)


def test_a_rewritten_chain_is_caught_by_its_anchor(tmp_path: Path) -> None:
    settings, db = populated(tmp_path)
    store = backends.artifact_store(settings)
    write_anchor(db, store)
    # Rewrite entry 5 and recompute its hash and the head, as a careful attacker would.
    from controller.audit.chain import CHAINED, content_hash

    with db.write() as session:
        row = session.scalar(select(AuditRow).where(AuditRow.chain_seq == 5))
        assert row is not None
        row.actor = "mallory@red"
        row.hash = content_hash(row.prev_hash or "", row, CHAINED[AuditRow][1])
    sql(settings, f"UPDATE chain_heads SET hash = '{row.hash}' WHERE chain = 'audit'")
    with db.read() as session:
        _, findings = verify(session)
        problems = check_anchors(session, store)
    assert findings == []  # the chain alone now looks fine...
    assert problems and "rewritten" in problems[0]  # ...but the anchor disagrees


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    settings, _ = populated(tmp_path)
    cmd = [sys.executable, "-m", "controller.cli.main", "verify", "--home", str(settings.home)]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "chains intact" in ok.stdout
    sql(settings, "UPDATE lineage_events SET payload = '{\"i\": 99}' WHERE chain_seq = 1")
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "lineage #1" in bad.stderr
