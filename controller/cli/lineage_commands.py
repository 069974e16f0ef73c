"""`tracectl trace …`: walk the lineage graph, look things up, diff, reproduce, export PROV."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from controller.cli import term
from controller.cli.output import Column, table

lineage_app = typer.Typer(
    help="Lineage graph: trace back, look up, diff, reproduce, PROV.", no_args_is_help=True
)
console = term.console()
err = term.console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _call(url: str, method: str, path: str, **kwargs: Any) -> Any:
    # Imported here: main.py registers this app, so a top-level import would be circular.
    from controller.cli.main import call, client

    api = client(url)
    return call(api.get if method == "GET" else api.post, path, **kwargs)


WALK_COLUMNS: list[Column] = [
    ("depth", lambda i: i["depth"], True),
    ("kind", lambda i: i["kind"], True),
    ("name", lambda i: i.get("label", ""), True),
    ("node", lambda i: i["id"], True),
]
LOOKUP_KEY = {"artifact": "sha256", "commit": "commit"}


def _node(url: str, node: str) -> str:
    """NODE as the graph names it: a bare task id gets its `task:`, and an artifact's sha256
    or a commit is looked up, so a unique prefix works and one never recorded is exit 3."""
    if node.startswith("task_"):
        return f"task:{node}"
    kind, _, key = node.partition(":")
    if kind not in LOOKUP_KEY or not key:
        return node
    found = _call(url, "GET", "/v1/lineage/lookup", **{LOOKUP_KEY[kind]: key})
    if not any(v for v in found.values() if isinstance(v, list)):
        err.print(f"error: nothing recorded produced or used {found.get('node', node)}")
        raise typer.Exit(3)
    return str(found.get("node", node))


def _walk(direction: str, node: str, depth: int, limit: int, as_json: bool, url: str) -> None:
    node = _node(url, node)
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _call(
            url,
            "GET",
            f"/v1/lineage/{direction}",
            node=node,
            depth=depth,
            limit=min(limit - len(items), 1000),
            cursor=cursor,
        )
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None or len(items) >= limit:
            break
    if as_json:
        console.print_json(json.dumps(items))
    elif items:
        sys.stdout.write(table(items, WALK_COLUMNS, wide=True))
    else:
        err.print(f"nothing {direction} of {node}", highlight=False)


@lineage_app.command()
def upstream(
    node: Annotated[
        str, typer.Argument(help="e.g. artifact:<sha256 or a prefix>, commit:<sha>, TASK_ID")
    ],
    depth: int = 10,
    limit: int = 200,
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """What NODE came from: tasks, artifacts, datasets, commits, nearest first."""
    _walk("upstream", node, depth, limit, as_json, url)


@lineage_app.command()
def downstream(
    node: Annotated[
        str, typer.Argument(help="e.g. data:<path>@<md5>, commit:<sha or a prefix>, TASK_ID")
    ],
    depth: int = 10,
    limit: int = 200,
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """What was made from NODE, nearest first."""
    _walk("downstream", node, depth, limit, as_json, url)


@lineage_app.command()
def lookup(
    sha256: Annotated[str | None, typer.Option(help="artifact content hash")] = None,
    uri: Annotated[str | None, typer.Option(help="artifact URI (file://, s3://)")] = None,
    mlflow_run_id: Annotated[str | None, typer.Option(help="MLflow run id")] = None,
    model: Annotated[str | None, typer.Option(help="registered model name/version")] = None,
    commit: Annotated[str | None, typer.Option(help="git commit")] = None,
    dataset: Annotated[str | None, typer.Option(help="DVC dataset path@md5")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Who produced or used something, by exactly one key.

    A commit or sha256 may be a unique prefix of 7 or more hex digits; an ambiguous one is an
    error listing the candidates (exit 2), and nothing recorded is exit 3."""
    keys = {"--sha256": sha256, "--uri": uri, "--mlflow-run-id": mlflow_run_id}
    keys |= {"--model": model, "--commit": commit, "--dataset": dataset}
    given = [k for k, v in keys.items() if v is not None]
    if len(given) != 1:
        err.print(
            f"error: give exactly one of {', '.join(keys)} (got {', '.join(given) or 'none'})",
            highlight=False,
        )
        raise typer.Exit(2)
    found = _call(
        url,
        "GET",
        "/v1/lineage/lookup",
        sha256=sha256,
        uri=uri,
        mlflow_run_id=mlflow_run_id,
        model=model,
        commit=commit,
        dataset=dataset,
    )
    console.print_json(json.dumps(found))
    lists = [v for v in found.values() if isinstance(v, list)]
    if lists and not any(lists):
        err.print(f"nothing recorded produced or used {found.get('node', 'it')}")
        raise typer.Exit(3)


def _value(value: Any) -> str:
    """A diff cell on one line: ids and hashes whole, an environment as its key, anything
    else as compact JSON, long JSON cut (the full document is `--json`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("key"):
        return f"env:{value['key']}"
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 60 else text[:59] + "…"


def _diff_rows(found: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, entry in found["tasks"].items():
        for aspect, side in entry.items():
            if aspect == "same":
                continue
            if aspect == "packages":
                changes = [
                    (f"package {c['package']}", c["a"], c["b"], False) for c in side["changes"]
                ]
            elif aspect == "outputs":
                changes = [(f"output {p}", o["a"], o["b"], o["same"]) for p, o in side.items()]
            else:
                changes = [(aspect, side["a"], side["b"], side["same"])]
            rows += [
                {"task": name, "aspect": what, "a": _value(a), "b": _value(b), "same": same}
                for what, a, b, same in changes
            ]
    return rows


@lineage_app.command()
def diff(a: str, b: str, as_json: JsonOpt = False, url: UrlOpt = DEFAULT_URL) -> None:
    """Two runs side by side: code, data, params, environment, metrics, outputs."""
    found = _call(url, "GET", f"/v1/runs/{a}/diff/{b}")
    if as_json:
        console.print_json(json.dumps(found))
        return
    columns: list[Column] = [
        ("task", lambda r: r["task"], True),
        ("aspect", lambda r: r["aspect"], True),
        ("a", lambda r: r["a"], True),
        ("b", lambda r: r["b"], True),
        ("same", lambda r: "yes" if r["same"] else "NO", True),
    ]
    sys.stdout.write(f"A  {a}\nB  {b}\n\n" + table(_diff_rows(found), columns, wide=True))


@lineage_app.command()
def reproduce(
    run_id: str,
    wait: Annotated[bool, typer.Option(help="wait and compare outputs")] = True,
    timeout_s: float = 3600,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Re-run RUN_ID pinned to its recorded commit, data, image and params; compare outputs."""
    made = _call(url, "POST", f"/v1/runs/{run_id}/reproduce")
    console.print(f"run [bold]{made['run_id']}[/] reproduces {run_id}")
    for note in made.get("unchecked", []):
        console.print(f"[yellow]not checked:[/] {note}")
    if not wait:
        return
    deadline = time.monotonic() + timeout_s
    report = _call(url, "GET", f"/v1/runs/{made['run_id']}/reproduction")
    while not report["finished"] and time.monotonic() < deadline:
        time.sleep(2)
        report = _call(url, "GET", f"/v1/runs/{made['run_id']}/reproduction")
    columns: list[Column] = [
        ("task", lambda o: o["task"], True),
        ("path", lambda o: o["path"], True),
        ("original", lambda o: o["original"], True),
        ("reproduced", lambda o: o["reproduced"], True),
        ("identical", lambda o: "yes" if o["identical"] else "NO", True),
    ]
    sys.stdout.write(table(report["outputs"], columns, wide=True))
    for name, ends in report.get("tasks", {}).items():
        if ends["reproduced"] != "succeeded" or ends["original"] != ends["reproduced"]:
            console.print(
                f"task {name}: {ends['reproduced']} in the reproduction "
                f"({ends['original']} in the original)",
                highlight=False,
            )
    if not report["finished"]:
        err.print(
            f"run {made['run_id']} has not finished after {timeout_s:g} s: "
            f"`tracectl tasks --run {made['run_id']}` shows where it is",
            highlight=False,
        )
        raise typer.Exit(1)
    if not report["identical"]:
        raise typer.Exit(1)


@lineage_app.command()
def prov(run_id: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Print a run's W3C PROV-JSON document."""
    console.print_json(json.dumps(_call(url, "GET", f"/v1/runs/{run_id}/prov")))


@lineage_app.command()
def openlineage(run_id: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Print a run's OpenLineage RunEvents."""
    console.print_json(json.dumps(_call(url, "GET", f"/v1/runs/{run_id}/openlineage")))
