"""`tracectl logs …`: print a task's log (`tracectl logs TASK`, the default command) and
reconcile its copies (`tracectl logs reconcile TASK [--repair]`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"


class ShowByDefault(TyperGroup):
    """`tracectl logs TASK …` keeps meaning `tracectl logs show TASK …`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


logs_app = typer.Typer(
    cls=ShowByDefault,
    no_args_is_help=True,
    help="A task's log lines (`tracectl logs TASK`), and reconciliation of "
    "its copies (`tracectl logs reconcile TASK`).",
)


def _print_line(item: dict[str, Any]) -> None:
    stream = item["stream"]
    prefix = {"stderr": "[red]err[/]", "system": "[cyan]sys[/]"}.get(stream, "[dim]out[/]")
    console.print(f"{prefix} {item['message']}", markup=True, highlight=False, soft_wrap=True)


@logs_app.command("show")
def show(
    task_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream until the task ends")
    ] = False,
    attempt: int | None = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Print a task's log lines."""
    # Imported here: main.py registers this app, so a top-level import would be circular.
    from controller.cli.client import ApiError
    from controller.cli.main import call, client, report

    api = client(url)
    if follow:
        try:
            for item in api.follow_logs(task_id):
                if item.get("end"):
                    err.print(f"[dim]-- task {item['status']} --[/]")
                    break
                _print_line(item)
        except ApiError as exc:
            report(exc)
        return
    after = 0
    while True:
        page = call(
            api.get, f"/v1/tasks/{task_id}/logs", after_seq=after, limit=1000, attempt=attempt
        )
        for item in page["items"]:
            _print_line(item)
        if not page["items"]:
            return
        after = page["next_after_seq"]


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
    slow.http.timeout = httpx.Timeout(600.0)  # the check waits for the index to catch up
    params = {"repair": str(repair).lower(), **({"attempt": attempt} if attempt else {})}
    result = call(slow.request, "POST", f"/v1/tasks/{task_id}/logs/reconcile", params=params)
    copies = result["copies"]
    if as_json:
        console.print_json(json.dumps(result))
    else:
        table = Table(title=f"log of {task_id}, attempt {result['attempt']}")
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
