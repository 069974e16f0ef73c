"""Links out of the console: MLflow, the git web UI, Airflow and Kibana, from settings."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel

from controller.config import Settings
from controller.domain.records import Run, Task


class Link(BaseModel):
    label: str
    url: str


def _base(value: str | None) -> str:
    return (value or "").rstrip("/")


def mlflow_ui(settings: Settings) -> str:
    uri = settings.mlflow_ui_url or settings.mlflow_uri
    return _base(uri) if uri.startswith(("http://", "https://")) else ""


def commit_url(settings: Settings, repo: str, commit: str) -> str | None:
    """The git web page of COMMIT, from the git_commit_url template; None for a repo with no
    web address (a local path, ssh)."""
    if not repo.startswith(("https://", "http://")) or not commit:
        return None
    return settings.git_commit_url.format(repo=repo.removesuffix(".git"), commit=commit)


def kibana_discover(settings: Settings, task_id: str) -> str | None:
    base = _base(settings.kibana_url)
    if not base:
        return None
    query = quote(f'labels.task_id:"{task_id}"', safe="")
    return f"{base}/app/discover#/?_a=(query:(language:kuery,query:'{query}'))"


def task_links(settings: Settings, run: Run, task: Task, commit: str | None) -> list[Link]:
    """Every link out the task has under the current settings."""
    out = []
    mlflow = mlflow_ui(settings)
    if mlflow and task.mlflow_run_id:
        out.append(Link(label="MLflow run", url=f"{mlflow}/#/runs/{task.mlflow_run_id}"))
    repo = task.spec.code.repo if task.spec.code else ""
    if commit and (url := commit_url(settings, repo, commit)):
        out.append(Link(label="commit", url=url))
    airflow = _airflow(settings, run, task)
    if airflow:
        out.append(Link(label="Airflow task instance", url=airflow))
    if kibana := kibana_discover(settings, task.id):
        out.append(Link(label="Kibana Discover", url=kibana))
    return out


def _airflow(settings: Settings, run: Run, task: Task) -> str | None:
    base = _base(settings.airflow_ui_url)
    ti = task.spec.labels.get("airflow_task_id")
    if not (base and run.airflow_dag_id and run.airflow_run_id and ti):
        return None
    url = (
        f"{base}/dags/{quote(run.airflow_dag_id, safe='')}/runs/"
        f"{quote(run.airflow_run_id, safe='')}/tasks/{quote(ti, safe='')}"
    )
    index = task.spec.labels.get("airflow_map_index", "-1")
    return f"{url}/mapped/{index}" if index.lstrip("-").isdigit() and int(index) >= 0 else url
