"""`tracectl`: the command line for the ML Service Controller.

Exit codes: 0 success; 1 a task or run ended failed/cancelled; 2 bad input (the message
names the field); 3 not found or conflict; 4 the controller cannot be reached.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from controller.cli import follow, term
from controller.cli.client import ApiError, Client
from controller.cli.image_commands import image_app
from controller.cli.lease_commands import leases, resources
from controller.cli.lineage_commands import lineage_app
from controller.cli.logs_commands import logs_app
from controller.cli.output import Column, Format, OutputOpt, document, print_list, print_one
from controller.cli.run_commands import ParamOpt, runs_app
from controller.cli.run_commands import run as run_pipeline
from controller.cli.share_commands import share_app
from controller.cli.term import escape

app = typer.Typer(
    help="tracectl: run ML workflow tasks with locked GPU/volume leases, shipped logs and "
    "end-to-end lineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = term.console(log_path=False)  # status lines without rich's file:line on the right
err = term.console(stderr=True)


def print_tree(tree: Any) -> None:
    """A lineage tree on a console as wide as its longest line: hashes are never wrapped."""
    term.console(width=10_000).print(tree)


def metrics_of(api: Client, run_id: str) -> dict[str, dict[str, float]]:
    """Each task's MLflow metrics ({} when the tracking server cannot say)."""
    from controller.lineage.tree import task_metrics

    try:
        return task_metrics(api.get(f"/v1/runs/{run_id}/diff/{run_id}"))
    except ApiError:
        return {}


UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"


UNREACHABLE_FIX = (
    "start one with `tracectl server --home DIR` (it listens on http://127.0.0.1:8765), "
    "or point --url or TRACECTL_URL at the one you run"
)


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def client(url: str) -> Client:
    # The CLI's own credential, not one of the controller's settings (like --url's envvar).
    return Client(url, token=os.environ.get("TRACECTL_TOKEN"))


def report(exc: ApiError) -> NoReturn:
    """Print an API error and exit with the code the module docstring promises."""
    if exc.status == 0:
        fail(f"{exc.detail} -> {UNREACHABLE_FIX}", 4)
    if exc.status == 422:
        errors = exc.problem.get("errors", [])
        if errors and all(str(e.get("path", "")).startswith("query.") for e in errors):
            fail("; ".join(f"{option(e['path'])}: {e.get('msg', '')}" for e in errors), 2)
        paths = [e.get("path") for e in errors]
        fail(f"{exc.detail}" + (f" (fields: {', '.join(map(str, paths))})" if paths else ""), 2)
    if exc.status in (404, 409):
        fail(exc.detail, 3)
    fail(f"HTTP {exc.status}: {exc.detail}", 1)


OPTION_OF_QUERY = {"run_id": "--run", "task_id": "--task"}


def option(path: str) -> str:
    """The CLI option a query parameter came from: `query.limit` is `--limit`."""
    name = path.removeprefix("query.")
    return OPTION_OF_QUERY.get(name, "--" + name.replace("_", "-"))


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        report(exc)


@app.command()
def server(
    home: Annotated[
        Path | None,
        typer.Option(
            help="state folder: store, logs, archive, MLflow (TRACECTL_HOME, ./.tracectl)"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the API and the web console")] = 8765,
) -> None:
    """Run the controller (API + supervisor + web console) in the foreground."""
    from controller.config import Settings
    from controller.server import serve

    serve(Settings.from_env(home=home, host=host, port=port))


def warnings_of(
    api: Client, name: str, spec: dict[str, Any], refused_later: bool = False
) -> list[str]:
    """The preflight warnings for SPEC. REFUSED_LATER: a spec preflight refuses gives none
    here, the submission that follows names every problem of every task."""
    try:
        result = api.post("/v1/preflight", {"name": name, "spec": spec})
    except ApiError as exc:
        if refused_later and exc.status == 422:
            return []
        report(exc)
    return [
        f"{finding['message']} -> {finding['fix']} [{finding['code']}]"
        for finding in result["findings"]
        if finding["action"] == "warn"
    ]


def print_warnings(found: dict[str, list[str]]) -> None:
    """FOUND: task name -> its warnings; one that several tasks share is printed once,
    naming them all (every task of a pipeline usually shares its repository)."""
    names: dict[str, list[str]] = {}
    for name, messages in found.items():
        for message in messages:
            names.setdefault(message, []).append(name)
    for message, who in names.items():
        err.print(
            f"[yellow]warning[/] {escape(', '.join(who))}: {escape(message)}",
            soft_wrap=True,
            highlight=False,
        )


def read_spec(spec_file: Path, params: list[str]) -> dict[str, Any]:
    import yaml

    from controller.airflow.render import SpecError
    from controller.cli.pipeline import parse_params

    try:
        spec = yaml.safe_load(spec_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read spec file {spec_file}: {exc}", 2)
    if not isinstance(spec, dict):
        fail(f"{spec_file} must hold a mapping (a TaskSpec), not {type(spec).__name__}", 2)
    if "tasks" in spec and "command" not in spec:
        fail(
            f"{spec_file} is a pipeline (it has 'tasks'), not one task's spec: run it with "
            f"`tracectl run {spec_file}`",
            2,
        )
    try:
        overrides = parse_params(params)
    except SpecError as exc:
        fail(str(exc), 2)
    if overrides:
        spec["params"] = {**(spec.get("params") or {}), **overrides}
    return spec


def spec_refusal(exc: ApiError, spec_file: Path) -> str:
    """The controller's 422 with each `tasks.0.spec.<field>` (or `spec.<field>`) as the
    spec file's `<field>`: the place to fix."""
    errors = exc.problem.get("errors", [])
    if not errors:
        return exc.detail
    lines = [f"{spec_file} was refused, nothing was created:"]
    for error in errors:
        parts = str(error.get("path", "")).removeprefix("body.").split(".")
        if parts[:1] == ["tasks"] and parts[2:3] == ["spec"]:
            parts = parts[3:]
        elif parts[:1] == ["spec"]:
            parts = parts[1:]
        lines.append(f"  {'.'.join(parts) or 'spec'}: {error.get('msg', '')}")
    return "\n".join(lines)


def _submit_in_new_run(
    api: Client, pipeline: str, name: str, spec: dict[str, Any], idempotency_key: str | None
) -> tuple[str, dict[str, Any]]:
    """One request makes the run and its task, so a refused task leaves no empty run; the
    run made for a job is closed as it is made (a service's stays open until closed)."""
    body = {
        "pipeline": pipeline,
        "tasks": [{"name": name, "spec": spec}],
        "close": spec.get("mode") != "service",
    }
    run_id = api.post("/v1/runs", body, idempotency_key=idempotency_key)["id"]
    return run_id, call(api.get, "/v1/tasks", run_id=run_id, limit=1)["items"][0]


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="YAML/JSON file with a TaskSpec")],
    name: Annotated[str, typer.Option(help="task name, unique in its run")],
    run: Annotated[str | None, typer.Option(help="add to this run")] = None,
    pipeline: Annotated[str, typer.Option(help="pipeline name of a new run")] = "adhoc",
    param: ParamOpt = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="wait for the task to end")] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Submit a task (creating a run unless --run is given)."""
    spec = read_spec(spec_file, param or [])
    api = client(url)
    print_warnings({name: warnings_of(api, name, spec, refused_later=True)})
    try:
        if run is None:
            run_id, task = _submit_in_new_run(api, pipeline, name, spec, idempotency_key)
        else:
            run_id = run
            task = api.post(
                f"/v1/runs/{run}/tasks",
                {"name": name, "spec": spec},
                idempotency_key=idempotency_key,
            )
    except ApiError as exc:
        if exc.status == 422:
            fail(spec_refusal(exc, spec_file), 2)
        report(exc)
    console.print(f"task [bold]{task['id']}[/] in run {run_id}: {task['status']}", soft_wrap=True)
    if run is None and spec.get("mode") == "service":
        console.print(
            f"the run stays open; `tracectl runs close {run_id}` stops the service", soft_wrap=True
        )
    if wait:
        task = call(follow.wait, api, task, console)
        if task["status"] != "succeeded":
            call(follow.explain_failure, api, task, err)
            raise typer.Exit(1)


TASK_COLUMNS: list[Column] = [
    ("task", lambda t: t["id"], True),
    ("name", lambda t: t["name"], True),
    ("run", lambda t: t["run_id"], True),
    ("status", lambda t: t["status"], True),
    ("attempt", lambda t: f"{t['attempt']}/{t['max_attempts']}", False),
    ("exit", lambda t: t.get("exit_code"), False),
    ("created", lambda t: t["created_at"][:19], False),
    ("reason", lambda t: follow.state(t).partition(" ")[2].strip("()"), True),
]


@app.command()
def tasks(
    run: Annotated[str | None, typer.Option(help="only tasks of this run")] = None,
    task_id: Annotated[str | None, typer.Argument(help="show one task")] = None,
    status: Annotated[str | None, typer.Option(help="only tasks in this status")] = None,
    limit: int = 100,
    output: OutputOpt = Format.TABLE,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """List tasks, newest first, or show one task (`tracectl tasks TASK_ID -o yaml`)."""
    api = client(url)
    if task_id:
        print_one(call(api.get, f"/v1/tasks/{task_id}"), TASK_COLUMNS, output)
        return
    page = call(api.get, "/v1/tasks", run_id=run, status=status, limit=limit, order="newest")
    if run and not page["items"]:
        call(api.get, f"/v1/runs/{run}")  # a run that does not exist is exit 3, not no tasks
    print_list(page["items"], TASK_COLUMNS, output)


@app.command()
def cancel(task_id: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Cancel a task (SIGTERM, then SIGKILL after the grace period)."""
    task = call(client(url).post, f"/v1/tasks/{task_id}/cancel")
    if task["status"] in follow.TERMINAL:
        console.print(f"task {task_id}: {task['status']}", highlight=False)
        return
    # the runner is told now; the task is cancelled once its command has stopped
    console.print(
        f"task {task_id}: {task['status']}, stopping (SIGTERM, then SIGKILL); "
        f"`tracectl tasks {task_id}` shows when it is cancelled",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def close(run_id: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Close a run (the same as `tracectl runs close`)."""
    run = call(client(url).post, f"/v1/runs/{run_id}/close")
    console.print(f"run {run_id}: closed at {run['closed_at']} ({run['status']})")


class TreeFormat(StrEnum):
    TREE = "tree"
    JSON = "json"
    YAML = "yaml"


@app.command()
def lineage(
    target: Annotated[str, typer.Argument(help="a run id (run_...) or task id (task_...)")],
    output: Annotated[
        TreeFormat, typer.Option("-o", "--output", help="tree (default), json or yaml")
    ] = TreeFormat.TREE,
    as_json: Annotated[bool, typer.Option("--json", help="the same as -o json")] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Show what produced a run's or one task's outputs, as a tree."""
    from controller.lineage.tree import run_tree

    api = client(url)
    fmt = TreeFormat.JSON if as_json else output
    if target.startswith("task_"):
        if fmt is not TreeFormat.TREE:
            data = call(api.get, f"/v1/tasks/{target}/lineage")
            sys.stdout.write(document(data, Format(fmt.value)))
            return
        run_id = call(api.get, f"/v1/tasks/{target}")["run_id"]
    elif target.startswith("run_"):
        run_id = target
    else:
        fail(f"{target!r} is neither a run id (run_...) nor a task id (task_...)", 2)
    data = call(api.get, f"/v1/runs/{run_id}/lineage")
    if fmt is not TreeFormat.TREE:
        sys.stdout.write(document(data, Format(fmt.value)))
        return
    if target != run_id:
        data = {**data, "tasks": [t for t in data["tasks"] if t["id"] == target]}
    print_tree(run_tree(data, metrics_of(api, run_id)))


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="state folder for the demo")] = Path(".tracectl"),
    n_estimators: int = 50,
    max_depth: int = 5,
    as_json: Annotated[bool, typer.Option("--json", help="also print the lineage as JSON")] = False,
    passport_out: Annotated[
        Path | None, typer.Option("--passport", help="write the run's passport to this file")
    ] = None,
) -> None:
    """Run the example pipeline (wine classifier) on the embedded default; print its lineage."""
    from controller.config import Settings
    from controller.demo.pipeline import submit as submit_pipeline
    from controller.demo.pipeline import verify_outputs, wait
    from controller.demo.repo import build_demo_repo
    from controller.lineage.tree import run_tree
    from controller.server import EmbeddedServer

    settings = Settings.from_env(home=home)
    with console.status("creating the demo repository (git + DVC)…"):
        repo, remote = build_demo_repo(settings.home / "demo")
    console.log(f"demo repository {repo} (DVC remote {remote})")
    with EmbeddedServer(settings) as srv:
        console.log(f"controller at {srv.url} (store {settings.store_url})")
        api = Client(srv.url)
        run_id, task_ids = submit_pipeline(
            api, repo, {"n_estimators": n_estimators, "max_depth": max_depth}
        )
        console.log(f"run {run_id}: submitted {len(task_ids)} tasks")
        wait(api, task_ids, console)
        data = api.get(f"/v1/runs/{run_id}/lineage")
        metrics = metrics_of(api, run_id)
        if passport_out:
            passport_out.write_text(
                json.dumps(api.get(f"/v1/runs/{run_id}/passport"), indent=2, sort_keys=True) + "\n"
            )
    print_tree(run_tree(data, metrics))
    checks = verify_outputs(data)
    bad = [c for c in checks if not c[2]]
    console.print(
        f"verified {len(checks) - len(bad)}/{len(checks)} output hashes against the archived files"
    )
    if as_json:
        console.print_json(json.dumps(data))
    if data["run"]["status"] != "succeeded" or bad:
        raise typer.Exit(1)


@app.command()
def render(
    spec: Annotated[Path, typer.Argument(help="pipeline spec (YAML)")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="DAG file to write")] = None,
) -> None:
    """Render a pipeline spec into an Airflow DAG file (deterministic output)."""
    from controller.airflow.render import SpecError
    from controller.airflow.render import render as render_dag

    try:
        text = render_dag(spec)
    except (SpecError, OSError) as exc:
        fail(str(exc), 2)
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _check_tasks(path: Path, params: list[str]) -> list[dict[str, Any]]:
    """The tasks of PATH: a pipeline spec (the file `tracectl run` takes, params filled) or
    the older `{tasks: [{name, spec}]}` list."""
    import yaml

    from controller.airflow.render import SpecError
    from controller.cli.pipeline import load_pipeline as load_spec
    from controller.cli.pipeline import parse_params
    from controller.core.preflight import load_pipeline

    try:
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("tasks"), dict):
            spec = load_spec(path, parse_params(params))
            return [{"name": t.name, "spec": t.spec} for t in spec.tasks if not t.stop]
        return load_pipeline(path)
    except (OSError, ValueError, yaml.YAMLError, SpecError) as exc:
        fail(str(exc), 2)


@app.command()
def check(
    pipeline: Annotated[Path, typer.Argument(help="pipeline spec (the file `tracectl run` takes)")],
    param: ParamOpt = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Preflight a pipeline's tasks against the controller without running them.

    Exit 1 when a finding would refuse a task, 0 otherwise (warnings are printed).
    """
    tasks = _check_tasks(pipeline, param or [])
    api = client(url)
    worst = 0
    for task in tasks:
        result = call(
            api.post,
            "/v1/preflight",
            {"name": task.get("name", "task"), "spec": task.get("spec", {})},
        )
        for finding in result["findings"]:
            style = "red" if finding["action"] == "refuse" else "yellow"
            console.print(
                f"[{style}]{finding['action']}[/] {escape(str(task.get('name')))}: "
                + escape(f"{finding['message']} -> {finding['fix']} [{finding['code']}]"),
                soft_wrap=True,
            )
            worst = max(worst, 1 if finding["action"] == "refuse" else 0)
        if not result["findings"]:
            console.print(f"[green]ok[/] {task.get('name')}")
    raise typer.Exit(worst)


@app.command()
def passport(
    run_id: Annotated[str, typer.Argument(help="the run (its id is the correlation id)")],
    out: Annotated[Path | None, typer.Option(help="write the JSON here")] = None,
    check_file: Annotated[Path | None, typer.Option("--check", help="verify a saved copy")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Print (or check) a run's passport: every identity it touched, with a content hash."""
    from controller.core.passport import check

    if check_file is not None:
        from controller.config import Settings

        problems = check(json.loads(check_file.read_text()), Settings.from_env().passport_key)
        for problem in problems:
            err.print(f"[red]{problem}[/]")
        if problems:
            raise typer.Exit(1)
        console.print(f"{check_file}: passport intact")
        return
    document = call(client(url).get, f"/v1/runs/{run_id}/passport")
    text = json.dumps(document, indent=2, sort_keys=True)
    if out:
        out.write_text(text + "\n")
        console.print(f"wrote {out} (content sha256 {document['content_sha256']})")
    else:
        console.print_json(text)


@app.command()
def verify(
    home: Annotated[Path | None, typer.Option(help="state folder (TRACECTL_HOME)")] = None,
    anchor: Annotated[bool, typer.Option(help="also write a new anchor after checking")] = False,
) -> None:
    """Check the audit and lineage hash chains and their anchors; exit 1 on any finding."""
    from controller import backends
    from controller.audit.anchors import check_anchors, write_anchor
    from controller.audit.chain import verify as verify_chains
    from controller.config import Settings
    from controller.store.database import Database

    settings = Settings.from_env(home=home)
    db = Database(settings.store_url)
    db.migrate()
    store = backends.artifact_store(settings)
    with db.read() as session:
        checked, findings = verify_chains(session)
        anchor_problems = check_anchors(session, store)
    for chain, count in checked.items():
        console.print(f"{chain}: {count} entries checked")
    for finding in findings:
        err.print(f"[red]{finding.chain} #{finding.seq}:[/] {finding.problem}")
    for problem in anchor_problems:
        err.print(f"[red]anchor:[/] {problem}")
    if findings or anchor_problems:
        raise typer.Exit(1)
    if anchor:
        console.print(f"anchor written: {write_anchor(db, store)}")
    console.print("[green]chains intact[/]")


app.command("run")(run_pipeline)
app.command("leases")(leases)
app.command("resources")(resources)
app.add_typer(runs_app, name="runs")
app.add_typer(logs_app, name="logs")
app.add_typer(share_app, name="share")
app.add_typer(image_app, name="image")
app.add_typer(
    lineage_app,
    name="trace",
    help="Trace artifacts: upstream, downstream, lookup, "
    "diff, reproduce, PROV and OpenLineage export.",
)

token_app = typer.Typer(help="API tokens (run on the controller's machine: it writes the store).")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who or what uses the token")],
    team: Annotated[str, typer.Option(help="the team it acts for")],
    role: Annotated[str, typer.Option(help="member or admin")] = "member",
    home: Annotated[Path | None, typer.Option(help="state folder (TRACECTL_HOME)")] = None,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from controller.auth.tokens import create_token
    from controller.config import Settings
    from controller.errors import TracectlError
    from controller.store.database import Database

    db = Database(Settings.from_env(home=home).store_url)
    db.migrate()
    try:
        token = create_token(db, name, team, role)
    except TracectlError as exc:
        fail(exc.detail, 2)
    console.print(token, highlight=False)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Option(help="revoke every live token of this name")],
    home: Annotated[Path | None, typer.Option(help="state folder (TRACECTL_HOME)")] = None,
) -> None:
    """Revoke tokens by name."""
    from controller.auth.tokens import revoke_token
    from controller.config import Settings
    from controller.store.database import Database

    db = Database(Settings.from_env(home=home).store_url)
    db.migrate()
    count = revoke_token(db, name)
    if count == 0:
        fail(f"no live token is named {name!r}", 3)
    console.print(f"revoked {count} token(s) named {name}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(app())
