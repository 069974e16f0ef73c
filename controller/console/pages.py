"""What each console page shows, gathered from the store into typed views."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from controller.console import links as out
from controller.console.timeline import Attempt, attempts, gantt
from controller.core.service import ControllerService
from controller.domain.lineage import LineageRecord
from controller.domain.records import Artifact, Run, Task
from controller.lineage import ui
from controller.lineage.graph import LineageGraph
from controller.store.schema import LineageRecordRow, RunRow, TaskRow


class TaskView(BaseModel):
    task: Task
    record: LineageRecord | None
    attempts: list[Attempt]
    metrics: dict[str, float]
    links: list[out.Link]

    @property
    def environment(self) -> dict[str, str]:
        """The recorded environment as text: a package list shows as its length."""
        env = self.record.environment.model_dump(exclude_none=True) if self.record else {}
        if self.task.spec.image and "image" not in env:
            env["image"] = self.task.spec.image
        if env.get("packages"):
            env["packages"] = f"{len(env['packages'])} pinned"
        return {k: _text(v) for k, v in env.items() if v not in ([], "", False)}

    @property
    def failure(self) -> str | None:
        if self.task.status.value in ("failed", "cancelled"):
            return self.task.reason or f"exit code {self.task.exit_code}"
        return None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "yes" if value is True else str(value)


class RunView(BaseModel):
    run: Run
    team: str
    tasks: list[TaskView]
    gantt: str
    lineage: ui.Parts


def _metrics(svc: ControllerService, task: Task) -> dict[str, float]:
    if not task.mlflow_run_id:
        return {}
    try:
        return svc.supervisor.tracking.metrics(task.mlflow_run_id)
    except Exception:  # a tracking server that is down must not take the page with it
        return {}


def task_views(svc: ControllerService, run: Run, rows: list[TaskRow]) -> list[TaskView]:
    with svc.db.read() as session:
        records = {
            r.task_id: LineageRecord.model_validate(r.record)
            for r in session.scalars(
                select(LineageRecordRow).where(LineageRecordRow.task_id.in_([t.id for t in rows]))
            )
        }
        tried = attempts(session, rows)
    views = []
    for row in rows:
        task = svc.get_task(row.id)
        record = records.get(row.id)
        commit = record.code.commit if record and record.code else None
        views.append(
            TaskView(
                task=task,
                record=record,
                attempts=tried.get(row.id, []),
                metrics=_metrics(svc, task),
                links=out.task_links(svc.settings, run, task, commit),
            )
        )
    return views


def run_view(svc: ControllerService, graph: LineageGraph, run_id: str) -> RunView:
    run = svc.get_run(run_id)  # 404 for a run of another team
    with svc.db.read() as session:
        rows = list(
            session.scalars(
                select(TaskRow)
                .where(TaskRow.run_id == run_id)
                .order_by(TaskRow.created_at, TaskRow.id)
            )
        )
        owner = session.get(RunRow, run_id)
        team = owner.team if owner else ""
    tasks = task_views(svc, run, rows)
    bars = [a for t in tasks for a in t.attempts]
    links = {"mlflow": out.mlflow_ui(svc.settings)}
    repo = next((t.task.spec.code.repo for t in tasks if t.task.spec.code), "")
    if url := out.commit_url(svc.settings, repo, "{commit}"):
        links["git"] = url
    parts = ui.parts(
        run.model_dump(mode="json"), graph.run_graph(run_id), {k: v for k, v in links.items() if v}
    )
    return RunView(
        run=run, team=team, tasks=tasks, gantt=gantt(run.created_at, bars), lineage=parts
    )


def task_page(svc: ControllerService, task_id: str) -> tuple[Run, TaskView, list[Artifact]]:
    task = svc.get_task(task_id)  # 404 for a task of another team
    run = svc.get_run(task.run_id)
    with svc.db.read() as session:
        row = session.get(TaskRow, task_id)
        assert row is not None
    view = task_views(svc, run, [row])[0]
    return run, view, svc.artifacts(task_id=task_id)
