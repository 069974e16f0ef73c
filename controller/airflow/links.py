"""Buttons on a tracectl task in the Airflow UI: its logs in Kibana, its MLflow run, its lineage.

Base URLs come from the tracectl connection's extras: ``kibana_url``, ``mlflow_url`` and
``ui_url`` (defaults to the controller URL). A link whose base or id is unknown is empty
(Airflow hides empty links).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from controller.airflow.hooks import DEFAULT_CONN_ID, TracectlHook
from controller.airflow.urls import kibana_url, lineage_url, mlflow_url

XCOM_TASK_ID = "tracectl_task_id"
XCOM_RUN_ID = "tracectl_run_id"
XCOM_MLFLOW_RUN_ID = "mlflow_run_id"
XCOM_SERVICE_URL = "service_url"


def _bases(operator: Any) -> dict[str, str]:
    conn_id = getattr(operator, "tracectl_conn_id", DEFAULT_CONN_ID)
    try:
        settings = TracectlHook(conn_id).settings
    except Exception:
        return {}
    extra = settings["extra"]
    return {
        "kibana": str(extra.get("kibana_url") or "").rstrip("/"),
        "mlflow": str(extra.get("mlflow_url") or "").rstrip("/"),
        "ui": str(extra.get("ui_url") or settings["base_url"]).rstrip("/"),
    }


class TracectlLogsLink(BaseOperatorLink):  # type: ignore[misc]
    name = "tracectl logs (Kibana)"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        task_id = XCom.get_value(ti_key=ti_key, key=XCOM_TASK_ID)
        base = _bases(operator).get("kibana")
        return kibana_url(base, task_id) if task_id and base else ""


class TracectlMlflowLink(BaseOperatorLink):  # type: ignore[misc]
    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        run_id = XCom.get_value(ti_key=ti_key, key=XCOM_MLFLOW_RUN_ID)
        base = _bases(operator).get("mlflow")
        return mlflow_url(base, run_id) if run_id and base else ""


class TracectlLineageLink(BaseOperatorLink):  # type: ignore[misc]
    name = "tracectl lineage"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        task_id = XCom.get_value(ti_key=ti_key, key=XCOM_TASK_ID)
        base = _bases(operator).get("ui")
        return lineage_url(base, task_id) if task_id and base else ""
