"""Links out of the console follow the settings, and are left out when a base is unset."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from controller.config import Settings
from controller.console.links import task_links
from controller.domain.records import Run, Task, TaskStatus
from controller.domain.spec import TaskSpec

NOW = datetime(2026, 12, 1, tzinfo=UTC)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def records(labels: dict[str, str]) -> tuple[Run, Task]:
    run = Run(
        id="run_1",
        pipeline="p",
        status="succeeded",
        airflow_dag_id="train dag",
        airflow_run_id="manual__2026-12-01",
        created_at=NOW,
        updated_at=NOW,
    )
    spec = TaskSpec.model_validate(
        {
            "command": ["true"],
            "labels": labels,
            "code": {"repo": "https://git.example/ml/repo.git", "ref": "main"},
        }
    )
    task = Task(
        id="task_1",
        run_id="run_1",
        name="train",
        spec=spec,
        status=TaskStatus.SUCCEEDED,
        attempt=1,
        max_attempts=1,
        mlflow_run_id="abc123",
        created_at=NOW,
    )
    return run, task


def test_every_link_is_built_from_its_setting(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        tracking_uri="sqlite:///x.db",
        mlflow_ui_url="https://mlflow.example/",
        git_commit_url="{repo}/-/commit/{commit}",
        airflow_ui_url="https://airflow.example",
        kibana_url="https://kibana.example",
    )
    run, task = records({"airflow_task_id": "train", "airflow_map_index": "2"})
    links = {link.label: link.url for link in task_links(settings, run, task, COMMIT)}
    assert links == {
        "MLflow run": "https://mlflow.example/#/runs/abc123",
        "commit": f"https://git.example/ml/repo/-/commit/{COMMIT}",
        "Airflow task instance": "https://airflow.example/dags/train%20dag/runs/"
        "manual__2026-12-01/tasks/train/mapped/2",
        "Kibana Discover": "https://kibana.example/app/discover#/?_a=(query:(language:kuery,"
        "query:'labels.task_id%3A%22task_1%22'))",
    }


def test_links_whose_base_is_unset_are_left_out(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, tracking_uri="sqlite:///x.db")
    run, task = records({})
    labels = [link.label for link in task_links(settings, run, task, COMMIT)]
    assert labels == ["commit"]  # an https repo has a web page by the default template
    served = Settings(home=tmp_path, tracking_uri="http://mlflow:5000")
    assert "MLflow run" in [link.label for link in task_links(served, run, task, None)]
