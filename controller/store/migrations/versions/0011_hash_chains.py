"""hash chains over the audit log and the lineage event log

Revision ID: 0011
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0003"
branch_labels = None
depends_on = None

CHAINED = ("audit_log", "lineage_events")


def upgrade() -> None:
    op.create_table(
        "chain_heads",
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain"),
    )
    # Seeded heads: concurrent first writers then contend on a row lock, not on an insert.
    heads = sa.table("chain_heads", sa.column("chain", sa.String), sa.column("seq", sa.BigInteger),
                     sa.column("hash", sa.String), sa.column("updated_at", sa.DateTime))
    op.bulk_insert(heads, [
        {"chain": chain, "seq": 0, "hash": "0" * 64,
         "updated_at": datetime(1970, 1, 1, tzinfo=UTC)}
        for chain in ("audit", "lineage")
    ])
    for table in CHAINED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
            batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
            batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
            batch.create_index(f"ix_{table}_chain_seq", ["chain_seq"], unique=True)


def downgrade() -> None:
    for table in CHAINED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_chain_seq")
            batch.drop_column("hash")
            batch.drop_column("prev_hash")
            batch.drop_column("chain_seq")
    op.drop_table("chain_heads")
