"""leases: inventory units, leases, fencing counter

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE_EXCLUSIVE = sa.text("released_at IS NULL AND is_exclusive")
ACTIVE = sa.text("released_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("pool", sa.String(length=253), nullable=False),
        sa.Column("flavor", sa.String(length=128), nullable=True),
        sa.Column("gpu_index", sa.Integer(), nullable=True),
        sa.Column("access", sa.String(length=8), nullable=False),
        sa.Column("cpu_milli", sa.BigInteger(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("in_inventory", sa.Boolean(), nullable=False),
        sa.Column("exclusive_holder", sa.String(length=40), nullable=True),
        sa.Column("shared_holders", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("shared_holders >= 0", name="ck_resources_shared_nonneg"),
        sa.CheckConstraint("exclusive_holder IS NULL OR shared_holders = 0",
                           name="ck_resources_exclusive_alone"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("is_exclusive", sa.Boolean(), nullable=False),
        sa.Column("cpu_milli", sa.BigInteger(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["resource"], ["resources.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_task_id", ["task_id"], unique=False)
        batch_op.create_index("ix_leases_resource", ["resource"], unique=False)
        batch_op.create_index("ix_leases_fencing_token", ["fencing_token"], unique=False)
        batch_op.create_index("uq_leases_one_exclusive", ["resource"], unique=True,
                              sqlite_where=ACTIVE_EXCLUSIVE, postgresql_where=ACTIVE_EXCLUSIVE)
        batch_op.create_index("ix_leases_active_task", ["task_id"], unique=False,
                              sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    counters = op.create_table(
        "lease_counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(counters, [{"name": "fencing", "value": 0}])


def downgrade() -> None:
    op.drop_table("lease_counters")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index("ix_leases_active_task")
        batch_op.drop_index("uq_leases_one_exclusive")
        batch_op.drop_index("ix_leases_fencing_token")
        batch_op.drop_index("ix_leases_resource")
        batch_op.drop_index("ix_leases_task_id")
    op.drop_table("leases")
    op.drop_table("resources")
