"""Printing a task's log, free of typer, click and rich: `tracectl logs` runs it from the
fast start in entry.py as well as from the typer command."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from controller.cli.client import Client

STREAMS = {"out": "stdout", "err": "stderr", "sys": "system"}
SHORT = {v: k for k, v in STREAMS.items()}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(value: str) -> datetime:
    """`10m`, `2h`, `1d`, `30s` ago, or an ISO 8601 time (UTC when it has no offset)."""
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if match:
        return datetime.now(UTC) - timedelta(seconds=int(match[1]) * UNITS[match[2]])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an age (30s, 10m, 2h, 1d) nor an ISO time (2026-12-06T09:30)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def write(data: str | bytes) -> None:
    out = sys.stdout
    if isinstance(data, str):
        out.write(data)
        return
    out.flush()
    out.buffer.write(data)
    out.buffer.flush()


class Query(NamedTuple):
    """What `tracectl logs` asks for; STREAMS are the API's names (stdout, ...)."""

    follow: bool = False
    tail: int | None = None
    grep: str | None = None
    since: datetime | None = None
    streams: Sequence[str] = ()
    attempt: int | None = None

    def checked(self) -> Query:
        """This query once its GREP compiles (re.error where it does not)."""
        if self.grep:
            re.compile(self.grep)
        return self

    def keeps(self, item: dict[str, Any]) -> bool:
        return (
            (not self.streams or item["stream"] in self.streams)
            and (not self.grep or re.search(self.grep, item["message"]) is not None)
            and (self.since is None or datetime.fromisoformat(item["timestamp"]) >= self.since)
        )

    def params(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "tail": self.tail,
            "grep": self.grep,
            "stream": list(self.streams) or None,
            "since": self.since.isoformat() if self.since else None,
        }


def _line(item: dict[str, Any]) -> str:
    return f"{SHORT.get(item['stream'], item['stream'])} {item['message']}\n"


def follow(api: Client, task_id: str, query: Query) -> None:
    """The tail (when asked) then every new line until the task ends, filtered here."""
    after = 0
    if query.tail is not None:
        page = api.get(f"/v1/tasks/{task_id}/logs", tail=query.tail, attempt=query.attempt)
        write("".join(_line(x) for x in page["items"] if query.keeps(x)))
        after = page["next_after_seq"]
    for item in api.follow_logs(task_id, after, query.attempt):
        if item.get("end"):
            from controller.cli import term

            term.console(stderr=True).print(f"[dim]-- task {item['status']} --[/]")
            return
        if query.keeps(item):
            write(_line(item))


def print_log(api: Client, task_id: str, query: Query) -> None:
    """The task's log as text, filtered on the server, block by block as it arrives."""
    if query.follow:
        follow(api, task_id, query)
        return
    for block in api.stream_text(f"/v1/tasks/{task_id}/logs/text", query.params()):
        write(block)
