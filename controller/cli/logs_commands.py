"""`tracectl logs …`: print a task's log (`tracectl logs TASK`, the default command) and
reconcile its copies (`tracectl logs reconcile TASK [--repair]`)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from controller.cli import term

console = term.console()
err = term.console(stderr=True)

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


STREAMS = {"out": "stdout", "err": "stderr", "sys": "system"}
SHORT = {v: k for k, v in STREAMS.items()}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(value: str) -> datetime:
    """`10m`, `2h`, `1d`, `30s` ago, or an ISO 8601 time (UTC when it has no offset)."""
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if match:
        return datetime.now(UTC) - timedelta(seconds=int(match[1]) * UNITS[match[2]])
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _write(data: str | bytes) -> None:
    out = sys.stdout
    if isinstance(data, str):
        out.write(data)
        return
    out.flush()
    out.buffer.write(data)
    out.buffer.flush()


def _follow(api: Any, task_id: str, attempt: int | None, tail: int | None, keep: Any) -> None:
    after = 0
    if tail is not None:
        page = api.get(f"/v1/tasks/{task_id}/logs", tail=tail, attempt=attempt)
        _write(
            "".join(
                f"{SHORT.get(x['stream'], x['stream'])} {x['message']}\n"
                for x in page["items"]
                if keep(x)
            )
        )
        after = page["next_after_seq"]
    for item in api.follow_logs(task_id, after, attempt):
        if item.get("end"):
            err.print(f"[dim]-- task {item['status']} --[/]")
            return
        if keep(item):
            _write(f"{SHORT.get(item['stream'], item['stream'])} {item['message']}\n")


def _print_text(api: Any, path: str, params: dict[str, Any]) -> None:
    for block in api.stream_text(path, params):
        _write(block)


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
        pattern = re.compile(grep) if grep else None
    except (ValueError, re.error) as exc:
        fail(f"{'--grep' if grep and not isinstance(exc, ValueError) else '--since'}: {exc}", 2)
    streams = [STREAMS[s] for s in stream or ()]
    api = client(url)
    if follow:

        def keep(item: dict[str, Any]) -> bool:
            return (
                (not streams or item["stream"] in streams)
                and (pattern is None or pattern.search(item["message"]) is not None)
                and (start is None or datetime.fromisoformat(item["timestamp"]) >= start)
            )

        call(_follow, api, task_id, attempt, tail, keep)
        return
    params = {
        "attempt": attempt,
        "tail": tail,
        "grep": grep,
        "stream": streams or None,
        "since": start.isoformat() if start else None,
    }
    call(_print_text, api, f"/v1/tasks/{task_id}/logs/text", params)


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
