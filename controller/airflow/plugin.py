"""The Airflow plugin of tracectl: registers :mod:`controller.airflow.listener`.

Found through the ``airflow.plugins`` entry point in ``pyproject.toml``, which Airflow 3 loads
in every process whatever ``lazy_discover_providers`` says (a provider's ``plugins`` in
``get_provider_info`` are loaded only when providers are discovered eagerly). Processes that
were running when the integration was installed need a restart to pick it up.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from controller.airflow import listener


class TracectlPlugin(AirflowPlugin):  # type: ignore[misc]
    name = "tracectl"
    listeners = [listener]
