"""Addresses the extra links open, with no Airflow import (so the real index can test them)."""

from __future__ import annotations

from urllib.parse import quote


def kibana_query(task_id: str) -> str:
    """Lucene query for one task's log lines: the shipped documents carry it as labels.task_id
    (see logstash/kibana's saved searches); Lucene so an index's query_string runs it as is."""
    return f'labels.task_id:"{task_id}"'


def kibana_url(base: str, task_id: str) -> str:
    query = quote(kibana_query(task_id), safe="")
    return f"{base}/app/discover#/?_a=(query:(language:lucene,query:'{query}'))"


def mlflow_url(base: str, mlflow_run_id: str) -> str:
    return f"{base}/#/runs/{mlflow_run_id}"


def lineage_url(base: str, task_id: str) -> str:
    return f"{base}/v1/tasks/{task_id}/lineage"
