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
    # Airflow renders every link when the task ends, each a round trip per connection read
    # and XCom pull: the operator's own hook has read the connection already.
    hook = vars(operator).get("hook")
    try:
        if not isinstance(hook, TracectlHook):
            hook = TracectlHook(getattr(operator, "tracectl_conn_id", DEFAULT_CONN_ID))
        settings = hook.settings
    except Exception:
        return {}
    return bases_of(settings)


def bases_of(settings: dict[str, Any]) -> dict[str, str]:
    """The links' base URLs from a hook's settings (the connection and its extras)."""
    extra = settings["extra"]
    return {
        "kibana": str(extra.get("kibana_url") or "").rstrip("/"),
        "mlflow": str(extra.get("mlflow_url") or "").rstrip("/"),
        "ui": str(extra.get("ui_url") or settings["base_url"]).rstrip("/"),
    }


def _value(operator: Any, attr: str, ti_key: Any, key: str) -> Any:
    """What the operator pushed as XCom KEY: its attribute ATTR when this process ran it."""
    known = vars(operator).get(attr)
    return known if isinstance(known, str) else XCom.get_value(ti_key=ti_key, key=key)


class TracectlLogsLink(BaseOperatorLink):  # type: ignore[misc]
    name = "tracectl logs (Kibana)"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        task_id = _value(operator, "_tracectl_task_id", ti_key, XCOM_TASK_ID)
        base = _bases(operator).get("kibana")
        return kibana_url(base, task_id) if task_id and base else ""


class TracectlMlflowLink(BaseOperatorLink):  # type: ignore[misc]
    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        run_id = _value(operator, "_mlflow_run_id", ti_key, XCOM_MLFLOW_RUN_ID)
        base = _bases(operator).get("mlflow")
        return mlflow_url(base, run_id) if run_id and base else ""


class TracectlLineageLink(BaseOperatorLink):  # type: ignore[misc]
    name = "tracectl lineage"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        task_id = _value(operator, "_tracectl_task_id", ti_key, XCOM_TASK_ID)
        base = _bases(operator).get("ui")
        return lineage_url(base, task_id) if task_id and base else ""


def link_xcoms(settings: dict[str, Any], task_id: str, mlflow_run_id: str | None) -> dict[str, str]:
    """The ``_link_<class>`` XComs Airflow's API server shows the buttons from: a worker pushes
    them when a task ends in it, the trigger that ends a deferred task pushes these."""
    bases = bases_of(settings)
    links: list[tuple[BaseOperatorLink, str]] = [
        (TracectlLogsLink(), kibana_url(bases["kibana"], task_id) if bases["kibana"] else ""),
        (
            TracectlMlflowLink(),
            mlflow_url(bases["mlflow"], mlflow_run_id) if mlflow_run_id and bases["mlflow"] else "",
        ),
        (TracectlLineageLink(), lineage_url(bases["ui"], task_id)),
    ]
    return {link.xcom_key: url for link, url in links}
