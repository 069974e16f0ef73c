"""runs: (filter column, created_at, id) indexes, so a filtered runs list is an ordered scan

The console's runs list filters by status, pipeline, team or DAG id and shows the newest
first; with only the one-column indexes the store read every matching run and sorted them
(100,000 runs: ~100 ms a page), with these it reads the page's rows in order, and counts
the runs per status from the index alone.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# status last: the count per status under a filter reads the index alone, not the rows
INDEXES = {
    "ix_runs_status_created": ["status", "created_at", "id"],
    "ix_runs_pipeline_created": ["pipeline", "created_at", "id", "status"],
    "ix_runs_team_created": ["team", "created_at", "id", "status"],
    "ix_runs_dag_created": ["airflow_dag_id", "created_at", "id", "status"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "runs", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="runs")
