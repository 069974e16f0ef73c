"""lineage graph: edges projected from lineage_events, and the content-hash cache index

Revision ID: 0003
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lineage_edges",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("src", sa.String(length=600), nullable=False),
        sa.Column("dst", sa.String(length=600), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("src", "dst", "kind", "path", name="uq_lineage_edges"),
    )
    op.create_index("ix_lineage_edges_dst", "lineage_edges", ["dst", "src"])
    op.create_index("ix_lineage_edges_run", "lineage_edges", ["run_id"])
    op.create_table(
        "lineage_cache",
        sa.Column("task_id", sa.String(length=40), primary_key=True),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lineage_cache_cache_key", "lineage_cache", ["cache_key"])


def downgrade() -> None:
    op.drop_index("ix_lineage_cache_cache_key", table_name="lineage_cache")
    op.drop_table("lineage_cache")
    op.drop_index("ix_lineage_edges_run", table_name="lineage_edges")
    op.drop_index("ix_lineage_edges_dst", table_name="lineage_edges")
    op.drop_table("lineage_edges")
