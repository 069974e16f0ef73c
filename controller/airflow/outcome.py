"""What an ended tracectl task leaves in Airflow: its XComs and, when it failed, the error text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

XCOM_ARTIFACTS = "artifacts"
XCOM_MODEL_VERSIONS = "model_versions"
XCOM_TRIGGER_FIRED_AT = "trigger_fired_at"
XCOM_TRIGGER_STARTED_AT = "trigger_started_at"


def artifact_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{path, sha256, uri}`` of each artifact the task stored."""
    return [{"path": a["path"], "sha256": a["sha256"], "uri": a["uri"]} for a in items]


def registered_versions(downstream: Mapping[str, Any]) -> list[str]:
    """``models:/<name>/<version>`` of the model nodes one step downstream of a task."""
    return [
        f"models:/{item['id'].removeprefix('model:')}"
        for item in downstream["items"]
        if item["kind"] == "model"
    ]


def failure_text(task: Mapping[str, Any], base_url: str) -> str:
    """The Airflow error of a task that did not succeed: status, reason, exit code, log URL."""
    return (
        f"tracectl task {task['name']} ({task['id']}) {task['status']}: "
        f"{task.get('reason') or 'no reason given'} (exit code {task.get('exit_code')}, "
        f"attempt {task.get('attempt')}/{task.get('max_attempts')}); "
        f"logs: {base_url}/v1/tasks/{task['id']}/logs"
    )
