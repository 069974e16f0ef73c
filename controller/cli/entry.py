"""The `tracectl` command: `tracectl logs [show] TASK ...` starts here without typer, click or
rich (their import was most of a log tail's time); every other command line, `--help`, and any
option value this reader does not take go to the typer app, which answers as it always has."""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.cli.client import ApiError
    from controller.cli.log_print import Query

FLAGS = {"--follow", "-f"}
VALUES = {"--tail", "--grep", "--since", "--stream", "--attempt", "--url"}
DEFAULT_URL = "http://127.0.0.1:8765"  # main.DEFAULT_URL: importing main imports typer


def _options(words: list[str]) -> tuple[dict[str, list[str]], list[str]] | None:
    """Each option's values and the positional words, read as click reads them; None for a
    word that is none of `logs show`'s options (--help, a typo, `--`): typer answers those."""
    found: dict[str, list[str]] = {}
    positional: list[str] = []
    rest = iter(words)
    for word in rest:
        name, eq, inline = word.partition("=")
        if word in FLAGS:
            found.setdefault("--follow", []).append("")
        elif name in VALUES:
            value = inline if eq else next(rest, None)
            if value is None:
                return None
            found.setdefault(name, []).append(value)
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    return found, positional


def _last(found: dict[str, list[str]], name: str) -> str | None:
    return found[name][-1] if name in found else None


def _number(value: str | None) -> int | None:
    """VALUE as click's IntRange(min=1) takes it; ValueError when it is not one."""
    if value is None:
        return None
    number = int(value)
    if number < 1:
        raise ValueError(f"{number} is below 1")
    return number


def _query(found: dict[str, list[str]]) -> Query:
    """The query of FOUND; ValueError or re.error where `logs show` would refuse an option."""
    from controller.cli.log_print import STREAMS, Query, since_time

    streams = found.get("--stream", [])
    if any(s not in STREAMS for s in streams):
        raise ValueError(f"--stream {streams}")
    since = _last(found, "--since")
    return Query(
        follow="--follow" in found,
        tail=_number(_last(found, "--tail")),
        grep=_last(found, "--grep"),
        since=since_time(since) if since else None,
        streams=[STREAMS[s] for s in streams],
        attempt=_number(_last(found, "--attempt")),
    ).checked()


def log_request(argv: list[str]) -> tuple[str, str, Query] | None:
    """(url, task, query) of a valid `logs [show] TASK ...` line; None for any other line."""
    if argv[:1] != ["logs"] or "_TRACECTL_COMPLETE" in os.environ:
        return None
    words = argv[1:]
    if words[:1] == ["show"]:
        words = words[1:]
    elif not words or words[0] == "reconcile" or words[0].startswith("-"):
        return None
    parsed = _options(words)
    if parsed is None or len(parsed[1]) != 1:
        return None
    found, (task_id,) = parsed
    try:
        query = _query(found)
    except (ValueError, re.error):
        return None  # typer's `logs show` prints the error it always has
    url = _last(found, "--url") or os.environ.get("TRACECTL_URL") or DEFAULT_URL
    return url, task_id, query


def _report(exc: ApiError) -> int:
    """The message and exit code `tracectl` has always given EXC (an error: rich may load)."""
    from typer import Exit

    from controller.cli.main import report

    try:
        report(exc)
    except Exit as done:
        return done.exit_code
    return 1


def _print(url: str, task_id: str, query: Query) -> int:
    from controller.cli.client import ApiError, Client
    from controller.cli.log_print import print_log

    try:
        print_log(Client(url, token=os.environ.get("TRACECTL_TOKEN")), task_id, query)
        sys.stdout.flush()
    except ApiError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # As click does on a closed pipe (`| head`): exit 1 with no traceback at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def main() -> None:
    request = log_request(sys.argv[1:])
    if request is None:
        from controller.cli.main import app

        app()
    else:
        sys.exit(_print(*request))
