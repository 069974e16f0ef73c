"""tracectl's Airflow integration, laid out like an Airflow provider.

- ``hooks``: :class:`TracectlHook` talks to the controller (connection type ``tracectl``)
- ``operators``: :class:`TracectlTaskOperator`, :class:`TracectlServiceOperator`
- ``triggers``: :class:`TracectlTaskTrigger` (async wait for a deferred operator)
- ``links``: buttons to Kibana logs, the MLflow run and the tracectl lineage of a task
- ``render``: YAML pipeline spec -> DAG file (``templates/pipeline``)
- ``selfcheck``: the DAG and the two tracectl tasks the self-check DAGs (``dags/``) share
- ``listener`` + ``plugin``: cancel a deferred task's controller task when a user ends it

It needs only ``apache-airflow`` and ``httpx`` and imports nothing else from ``controller``,
so it can be installed into Airflow's own virtualenv with ``pip install --no-deps``.
Airflow finds it through the ``apache_airflow_provider`` entry point (``get_provider_info``)
and the listener through the ``airflow.plugins`` entry point (``plugin.TracectlPlugin``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    from controller import __version__

    return {
        "package-name": "tracectl",
        "name": "tracectl",
        "description": "Run ML tasks on the tracectl controller (locked GPUs/volumes, shipped "
        "logs, lineage).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "tracectl",
                "tags": ["software"],
                "external-doc-url": "https://github.com/tracectl/tracectl/blob/main/docs/airflow.md",
            },
        ],
        "operators": [
            {"integration-name": "tracectl", "python-modules": ["controller.airflow.operators"]},
        ],
        "hooks": [
            {"integration-name": "tracectl", "python-modules": ["controller.airflow.hooks"]},
        ],
        "triggers": [
            {"integration-name": "tracectl", "python-modules": ["controller.airflow.triggers"]},
        ],
        "connection-types": [
            {
                "hook-class-name": "controller.airflow.hooks.TracectlHook",
                "connection-type": "tracectl",
            },
        ],
        "extra-links": [
            "controller.airflow.links.TracectlLogsLink",
            "controller.airflow.links.TracectlMlflowLink",
            "controller.airflow.links.TracectlLineageLink",
        ],
    }
