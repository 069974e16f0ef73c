"""`tracectl share …`: let another team use one of your artifacts as a task input."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli import term
from controller.cli.output import Column, Format, OutputOpt, print_list, print_one

console = term.console()

UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"

share_app = typer.Typer(
    no_args_is_help=True,
    help="Grants that let another team name one of your team's artifacts as a task input.",
)

COLUMNS: list[Column] = [
    ("id", lambda s: s["id"], True),
    ("sha256", lambda s: s["sha256"], True),
    ("owner", lambda s: s["owner_team"], True),
    ("team", lambda s: s["team"], True),
    ("granted_by", lambda s: s["granted_by"], False),
    ("created_at", lambda s: s["created_at"], False),
    ("revoked_at", lambda s: s["revoked_at"], True),
]


@share_app.command("grant")
def grant(
    sha256: Annotated[str, typer.Argument(help="the artifact, sha256:<hex> or <hex>")],
    team: Annotated[str, typer.Option(help="the team that may use it")],
    output: OutputOpt = Format.TABLE,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Grant TEAM the use of an artifact your team stored (audited)."""
    from controller.cli.main import call, client  # main registers this app: no cycle

    share = call(client(url).post, "/v1/shares", {"sha256": sha256, "team": team})
    print_one(share, COLUMNS, output)


@share_app.command("list")
def list_shares(
    all_: Annotated[bool, typer.Option("--all", help="revoked grants too")] = False,
    output: OutputOpt = Format.TABLE,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Grants your team made or received, newest first."""
    from controller.cli.main import call, client

    state = "all" if all_ else "active"
    print_list(call(client(url).get, "/v1/shares", state=state), COLUMNS, output)


@share_app.command("revoke")
def revoke(
    share_id: Annotated[int, typer.Argument(help="the grant's id (tracectl share list)")],
    output: OutputOpt = Format.TABLE,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """End a grant your team made; tasks submitted already keep their input."""
    from controller.cli.main import call, client

    print_one(call(client(url).delete, f"/v1/shares/{share_id}"), COLUMNS, output)
