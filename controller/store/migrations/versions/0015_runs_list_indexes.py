"""runs: (filter column, created_at, id) indexes, so a filtered runs list is an ordered scan

The console's runs list filters by status, pipeline, team or DAG id and shows the newest
first; with only the one-column indexes the store read every matching run and sorted them
(100,000 runs: ~100 ms a page), with these it reads the page's rows in order.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_runs_status_created": "status",
    "ix_runs_pipeline_created": "pipeline",
    "ix_runs_team_created": "team",
    "ix_runs_dag_created": "airflow_dag_id",
}


def upgrade() -> None:
    for name, column in INDEXES.items():
        op.create_index(name, "runs", [column, "created_at", "id"])


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="runs")
