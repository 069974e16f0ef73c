"""`tracectl run PIPELINE.yaml` (a pipeline as one run, followed) and `tracectl runs …`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli import follow, term
from controller.cli.client import ApiError
from controller.cli.output import Column, Format, OutputOpt, print_list, print_one

if TYPE_CHECKING:
    from collections.abc import Iterator

    from controller.cli.client import Client
    from controller.cli.pipeline import Pipeline, PipelineTask

console = term.console()
err = term.console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="key=value over a param (repeatable); the value is read as YAML"
    ),
]

RUN_COLUMNS: list[Column] = [
    ("run", lambda r: r["id"], True),
    ("pipeline", lambda r: r["pipeline"], True),
    ("status", lambda r: r["status"], True),
    ("created", lambda r: r["created_at"][:19], True),
    ("closed", lambda r: (r.get("closed_at") or "")[:19], False),
    ("finished", lambda r: (r.get("finished_at") or "")[:19], False),
    (
        "airflow",
        lambda r: " ".join(filter(None, (r.get("airflow_dag_id"), r.get("airflow_run_id")))),
        False,
    ),
]

runs_app = typer.Typer(
    help="Runs: list (`tracectl runs`), show, create an open one, close.",
    invoke_without_command=True,
)


def _main() -> Any:
    # Imported here: main.py registers this app, so a top-level import would be circular.
    from controller.cli import main

    return main


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    limit: int = 20,
    pipeline: str | None = None,
    output: OutputOpt = Format.TABLE,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """List runs, newest first (`tracectl runs`), or one of the commands below."""
    if ctx.invoked_subcommand is not None:
        return
    page = _main().call(_main().client(url).get, "/v1/runs", limit=limit, pipeline=pipeline)
    print_list(page["items"], RUN_COLUMNS, output)


@runs_app.command("show")
def runs_show(run_id: str, output: OutputOpt = Format.TABLE, url: UrlOpt = DEFAULT_URL) -> None:
    """Show one run."""
    print_one(_main().call(_main().client(url).get, f"/v1/runs/{run_id}"), RUN_COLUMNS, output)


@runs_app.command("create")
def runs_create(
    pipeline: Annotated[str, typer.Option(help="pipeline name")] = "adhoc",
    label: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Create an open run: add tasks with `tracectl submit --run RUN`, then close it."""
    labels = dict(item.partition("=")[::2] for item in label or [])
    run = _main().call(
        _main().client(url).post, "/v1/runs", {"pipeline": pipeline, "labels": labels}
    )
    console.print(run["id"], highlight=False)
    err.print(
        f"run {run['id']} is open: `tracectl submit SPEC --name NAME --run {run['id']}`,"
        f" then `tracectl runs close {run['id']}`",
        soft_wrap=True,
        highlight=False,
    )


@runs_app.command("close")
def runs_close(run_id: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Close a run: it takes no new tasks; its services stop once its other tasks end."""
    run = _main().call(_main().client(url).post, f"/v1/runs/{run_id}/close")
    console.print(f"run {run_id}: closed at {run['closed_at']} ({run['status']})", highlight=False)


def _input_tasks(task: PipelineTask) -> set[str]:
    return {
        i.get("artifact", "").removeprefix("task:").split("/")[0]
        for i in task.spec.get("inputs") or []
    }


def task_bodies(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every task but the stop tasks, for one request: an upstream that feeds no `task:` input
    goes into `spec.after`, so the controller holds the task for it."""
    stops = {t.name for t in pipeline.tasks if t.stop}
    bodies = []
    for task in pipeline.tasks:
        after = [n for n in task.after if n not in _input_tasks(task) and n not in stops]
        if not task.stop:
            bodies.append(
                {"name": task.name, "spec": {**task.spec, **({"after": after} if after else {})}}
            )
    return bodies


def open_services(pipeline: Pipeline) -> list[str]:
    """Service tasks no stop task ends: they keep running and the run stays open."""
    stops = {t.stop for t in pipeline.tasks if t.stop}
    return [
        t.name for t in pipeline.tasks if t.spec.get("mode") == "service" and t.name not in stops
    ]


class PipelineRun:
    """Submits a pipeline's tasks as their upstreams allow and follows them to the end."""

    def __init__(self, api: Client, pipeline: Pipeline, run_id: str) -> None:
        self.api, self.pipeline, self.run_id = api, pipeline, run_id
        self.tasks: dict[str, dict[str, Any]] = {}  # name -> the controller's task
        self.skipped: set[str] = set()  # an upstream did not succeed
        self.stopped: set[str] = set()  # stop tasks done (the run was closed)
        self.closed = False

    def handled(self, name: str) -> bool:
        return name in self.tasks or name in self.skipped or name in self.stopped

    def _ready(self, task: PipelineTask) -> bool | None:
        """True: submit now; False: wait; None: never (an upstream did not succeed)."""
        ups = [self.tasks.get(n) for n in task.after]
        # the controller itself waits for task: inputs; hold back only other upstreams
        inputs = _input_tasks(task)
        for name, up in zip(task.after, ups, strict=True):
            if name in self.skipped or (up and up["status"] in ("failed", "cancelled")):
                return None
            if up is None or (
                name not in inputs
                and up["status"] != "succeeded"
                and not (up["spec"].get("mode") == "service" and up["status"] == "running")
            ):
                return False
        return True

    def submit_ready(self) -> None:
        """Close the run for each stop task whose upstreams allow (the controller holds and
        cancels the other tasks itself), and once nothing is left to wait for."""
        for task in self.pipeline.tasks:
            if not task.stop or self.handled(task.name):
                continue
            ready = self._ready(task)
            if ready is None:
                self.skipped.add(task.name)
                console.print(f"task {task.name}: skipped (an upstream did not succeed)")
            elif ready:
                self.close()
                self.stopped.add(task.name)
        self._close_when_all_in()

    def _close_when_all_in(self) -> None:
        waiting = [t for t in self.pipeline.tasks if not self.handled(t.name)]
        if not waiting and not self.open_services():
            self.close()

    def open_services(self) -> list[str]:
        return open_services(self.pipeline)

    def close(self) -> None:
        if not self.closed:
            self.api.post(f"/v1/runs/{self.run_id}/close")
            self.closed = True

    def done(self) -> bool:
        """Every task handled, and each ended (a service nothing stops: running is enough)."""
        lasting = set(self.open_services())
        return all(self.handled(t.name) for t in self.pipeline.tasks) and all(
            t["status"] in follow.TERMINAL or (n in lasting and t["status"] == "running")
            for n, t in self.tasks.items()
        )

    def refresh(self) -> Iterator[dict[str, Any]]:
        """Reload every task, yielding each whose state changed as soon as it is stored (so a
        progress count made then includes it and none of the tasks not reloaded yet)."""
        for name, task in list(self.tasks.items()):
            if task["status"] in follow.TERMINAL:
                continue
            now = self.api.get(f"/v1/tasks/{task['id']}")
            self.tasks[name] = now
            if follow.state(now) != follow.state(task):
                yield now


def _progress(flow: PipelineRun) -> str:
    ended = sum(t["status"] in follow.TERMINAL for t in flow.tasks.values())
    return f"{ended}/{len(task_bodies(flow.pipeline))} tasks done"  # a stop task runs nothing


def follow_pipeline(flow: PipelineRun, poll_s: float) -> None:
    for task in flow.tasks.values():
        console.print(
            f"task {task['name']} {task['id']}: {follow.state(task)}",
            highlight=False,
            soft_wrap=True,
        )
    while not flow.done():
        time.sleep(poll_s)
        for task in flow.refresh():
            console.print(
                f"task {task['name']} {task['id']}: {follow.state(task)} [{_progress(flow)}]",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        before = set(flow.tasks)
        flow.submit_ready()
        for name in set(flow.tasks) - before:
            task = flow.tasks[name]
            console.print(f"task {name} {task['id']}: {follow.state(task)}", highlight=False)


def run(
    pipeline_file: Annotated[
        Path, typer.Argument(help="pipeline spec (templates/pipeline/*.yaml)")
    ],
    param: ParamOpt = None,
    wait: Annotated[bool, typer.Option(help="follow the run until it ends")] = True,
    poll_s: Annotated[float, typer.Option(help="seconds between progress checks")] = 1.0,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Run a pipeline spec as one run: every task, `task:` inputs wired, params filled."""
    from controller.airflow.render import SpecError
    from controller.cli.pipeline import load_pipeline, parse_params

    main = _main()
    try:
        pipeline = load_pipeline(pipeline_file, parse_params(param or []))
    except (SpecError, OSError) as exc:
        main.fail(f"{exc}", 2)
    api = main.client(url)
    main.print_warnings(
        {
            t.name: main.warnings_of(api, t.name, t.spec, refused_later=True)
            for t in pipeline.tasks
            if not t.stop
        }
    )
    run_id = create_run(main, api, pipeline)
    console.print(
        f"run [bold]{run_id}[/] of {pipeline.name}: {len(task_bodies(pipeline))} tasks, "
        f"params {json.dumps(pipeline.params)}",
        highlight=False,
        soft_wrap=True,
    )
    flow = PipelineRun(api, pipeline, run_id)
    for made in main.call(api.get, "/v1/tasks", run_id=run_id, limit=1000)["items"]:
        flow.tasks[made["name"]] = made
    main.call(flow.submit_ready)
    if not wait:
        for made in flow.tasks.values():
            console.print(f"task {made['name']} {made['id']}: {follow.state(made)}")
        console.print(
            f"see how it goes: tracectl tasks --run {run_id}; tracectl lineage {run_id}",
            highlight=False,
            soft_wrap=True,
        )
        return
    main.call(follow_pipeline, flow, poll_s)
    _finish(main, flow)


def create_run(main: Any, api: Client, pipeline: Pipeline) -> str:
    """The run with every task, in one transaction: one refused task creates nothing."""
    bodies = task_bodies(pipeline)
    stays_open = any(t.stop for t in pipeline.tasks) or open_services(pipeline)
    body = {"pipeline": pipeline.name, "tasks": bodies, "close": not stays_open}
    try:
        made = api.post("/v1/runs", body)
    except ApiError as exc:
        if exc.status == 422:
            main.fail(refusal(exc, bodies), 2)
        main.report(exc)
        raise  # both exit the command
    return str(made["id"])


def refusal(exc: ApiError, bodies: list[dict[str, Any]]) -> str:
    """The controller's 422 with each `tasks.N.spec.<field>` as the pipeline file's
    `tasks.<name>.<field>`: the place to fix."""
    errors = exc.problem.get("errors", [])
    if not errors:
        return f"{exc.detail}; nothing was created"
    lines = ["nothing was created. Fix in the pipeline file:"]
    for error in errors:
        parts = str(error.get("path", "")).removeprefix("body.").split(".")
        if len(parts) > 1 and parts[0] == "tasks" and parts[1].isdigit():
            parts = ["tasks", bodies[int(parts[1])]["name"], *parts[3:]]
        lines.append(f"  {'.'.join(parts)}: {error.get('msg', '')}")
    return "\n".join(lines)


def _finish(main: Any, flow: PipelineRun) -> None:
    failed = [t for t in flow.tasks.values() if t["status"] in ("failed", "cancelled")]
    for task in failed:
        main.call(follow.explain_failure, flow.api, task, err)
    status = main.call(flow.api.get, f"/v1/runs/{flow.run_id}")["status"]
    skipped = f", skipped: {', '.join(sorted(flow.skipped))}" if flow.skipped else ""
    console.print(
        f"run {flow.run_id}: {status} ({_progress(flow)}{skipped})", highlight=False, soft_wrap=True
    )
    if flow.open_services():
        console.print(
            f"services {', '.join(flow.open_services())} keep running; "
            f"`tracectl runs close {flow.run_id}` stops them",
            soft_wrap=True,
        )
    console.print(f"lineage: tracectl lineage {flow.run_id}", highlight=False, soft_wrap=True)
    if failed or flow.skipped:
        raise typer.Exit(1)
