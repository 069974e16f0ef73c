"""log_reconciliation: per task attempt and log copy, count, checksum and status

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_reconciliation",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("copy", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("missing", sa.BigInteger(), nullable=False),
        sa.Column("extra", sa.BigInteger(), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repaired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "attempt", "copy", name="uq_log_reconciliation_copy"),
    )
    op.create_index("ix_log_reconciliation_task_id", "log_reconciliation", ["task_id"])
    op.create_index("ix_log_reconciliation_run_id", "log_reconciliation", ["run_id"])
    op.create_index("ix_log_reconciliation_status", "log_reconciliation", ["status"])


def downgrade() -> None:
    op.drop_index("ix_log_reconciliation_status", "log_reconciliation")
    op.drop_index("ix_log_reconciliation_run_id", "log_reconciliation")
    op.drop_index("ix_log_reconciliation_task_id", "log_reconciliation")
    op.drop_table("log_reconciliation")
