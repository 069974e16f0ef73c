"""`tracectl logs …`: print a task's log (`tracectl logs TASK`, the default command) and
reconcile its copies (`tracectl logs reconcile TASK [--repair]`)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from controller.cli import term
from controller.cli.log_print import STREAMS, Query, print_log, since_time

console = term.console()
err = term.console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"


class ShowByDefault(TyperGroup):
    """`tracectl logs TASK …` keeps meaning `tracectl logs show TASK …`, options first too
    (`tracectl logs --tail 5 TASK`, as `kubectl logs` takes them)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["show", *args]
        return super().parse_args(ctx, args)


logs_app = typer.Typer(
    cls=ShowByDefault,
    no_args_is_help=True,
    help="A task's log lines: `tracectl logs TASK [--follow] [--tail N] [--grep RE] "
    "[--since 10m] [--stream out|err|sys]` (the same as `logs show`, whose --help explains "
    "them), and reconciliation of its copies (`tracectl logs reconcile TASK`).",
)


@logs_app.command("show")
def show(
    task_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream until the task ends")
    ] = False,
    tail: Annotated[int | None, typer.Option(min=1, help="only the last N lines")] = None,
    grep: Annotated[str | None, typer.Option(help="only lines matching this regex")] = None,
    since: Annotated[
        str | None, typer.Option(help="only lines since then: 10m, 2h, 1d or an ISO time")
    ] = None,
    stream: Annotated[
        list[str] | None, typer.Option(help="only this stream: out, err or sys (repeatable)")
    ] = None,
    attempt: Annotated[int | None, typer.Option(min=1, help="the latest by default")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Print a task's log lines (`out|err|sys MESSAGE`), filtered on the server."""
    # Imported here: main.py registers this app, so a top-level import would be circular.
    from controller.cli.main import call, client, fail

    bad = sorted(set(stream or ()) - set(STREAMS))
    if bad:
        fail(f"--stream {bad[0]}: use out, err or sys", 2)
    try:
        start = since_time(since) if since else None
        streams = [STREAMS[s] for s in stream or ()]
        query = Query(follow, tail, grep, start, streams, attempt).checked()
    except (ValueError, re.error) as exc:
        fail(f"{'--grep' if grep and not isinstance(exc, ValueError) else '--since'}: {exc}", 2)
    call(print_log, client(url), task_id, query)


@logs_app.command("reconcile")
def reconcile(
    task_id: str,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="re-ship missing lines and rewrite a damaged archive, then re-check"
        ),
    ] = False,
    attempt: Annotated[int | None, typer.Option(help="the latest attempt by default")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Compare a task's log in the file record, Kafka, the search index and the archive.

    Exits 1 when a copy is still missing lines, has extra ones or is corrupt."""
    from controller.cli.main import call, client

    slow = client(url)
    slow.http.timeout = 600.0  # the check waits for the index to catch up
    params = {"repair": str(repair).lower(), **({"attempt": attempt} if attempt else {})}
    result = call(slow.request, "POST", f"/v1/tasks/{task_id}/logs/reconcile", params=params)
    copies = result["copies"]
    if as_json:
        console.print_json(json.dumps(result))
    else:
        table = term.table(title=f"log of {task_id}, attempt {result['attempt']}")
        for column in ("copy", "status", "lines", "checksum", "checked", "repaired"):
            table.add_column(column)
        for item in copies:
            table.add_row(
                item["copy"],
                item["summary"],
                str(item["lines"]),
                (item["checksum"] or "")[:12],
                item["checked_at"] or "",
                item["repaired_at"] or "",
            )
        console.print(table)
    if any(item["status"] in ("missing", "extra", "corrupt") for item in copies):
        raise typer.Exit(1)
