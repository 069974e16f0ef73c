"""Renders a run's lineage as a Rich tree, for the CLI and the demo."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.tree import Tree

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}


def _status(value: str) -> str:
    return f"[{STATUS_STYLE.get(value, 'cyan')}]{value}[/]"


def _environment(env: dict[str, Any]) -> str:
    if env.get("image"):
        return f"image {env['image']}"
    if not env.get("key"):
        return f"python {env.get('python_version')} (no environment recorded)"
    source = env.get("path") or "interpreter"  # kind "bare": "bare interpreter"
    how = "detected" if env.get("detected") else "declared"
    return (
        f"[bold]env:{env['key']}[/] {env.get('kind')} {source} ({how}), "
        f"python {env.get('python_version')}, {len(env.get('packages') or [])} packages"
    )


def _number(value: float) -> str:
    return f"{value:.4g}"


def task_tree(parent: Tree, task: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
    record = task.get("lineage") or {}
    node = parent.add(
        f"[bold]task {task['name']}[/] {_status(task['status'])} "
        f"[dim]{task['id']} attempt {record.get('attempt', '-')} "
        f"exit {record.get('exit_code', '-')}[/]"
        + (f" [red]{task['reason']}[/]" if task.get("reason") else "")
    )
    code = record.get("code")
    if code:
        node.add(
            f"code    {code['repo']} @ [bold]{code['commit']}[/] "
            f"(ref {code['ref']}{', DIRTY' if code['dirty'] else ', clean'})"
        )
    for data in record.get("data", []):
        node.add(
            f"data    {data['path']} md5 [bold]{data['md5']}[/] "
            f"rev {data['rev'][:12]} remote {data.get('remote') or '-'}"
        )
    for item in record.get("inputs", []):
        node.add(
            f"input   {item['path']} sha256:{item['sha256']} "
            f"from task {item.get('produced_by_task') or '-'}"
        )
    node.add(f"env     {_environment(record.get('environment') or {})}")
    if record.get("params"):
        node.add(f"params  {escape(json.dumps(record['params']))}")
    mlflow = record.get("mlflow")
    if mlflow:
        node.add(
            f"mlflow  run [bold]{mlflow['run_id']}[/] (experiment {mlflow['experiment_id']}, "
            f"{mlflow['tracking_uri']})"
        )
    if metrics:
        node.add(
            "metrics " + " ".join(f"{k}=[bold]{_number(v)}[/]" for k, v in sorted(metrics.items()))
        )
    for lease in record.get("leases", []):
        node.add(f"lease   {lease['resource']} fencing token {lease['fencing_token']}")
    logs = record.get("logs") or {}
    if logs:
        node.add(f"logs    {logs.get('lines')} lines sha256:{logs.get('sha256')}")
    if record.get("outputs"):
        outputs = node.add("outputs")
        for out in record["outputs"]:
            outputs.add(f"{out['path']} sha256:[bold]{out['sha256']}[/] ({out['size']} bytes)")


def run_tree(lineage: dict[str, Any], metrics: dict[str, dict[str, float]] | None = None) -> Tree:
    """The run's tree; METRICS (task name -> its MLflow metrics) adds each task's key figures.

    Print it on a console wide enough for its longest line (`wide_console`): a wrapped
    sha256 cannot be copied."""
    run = lineage["run"]
    tree = Tree(f"[bold]run {run['id']}[/] pipeline {run['pipeline']} {_status(run['status'])}")
    for task in lineage["tasks"]:
        task_tree(tree, task, (metrics or {}).get(task["name"]))
    return tree


def task_metrics(diff: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Task name -> metrics, from a run's diff with itself (GET /v1/runs/{id}/diff/{id})."""
    return {
        name: entry["metrics"]["a"]
        for name, entry in diff.get("tasks", {}).items()
        if (entry.get("metrics") or {}).get("a")
    }
