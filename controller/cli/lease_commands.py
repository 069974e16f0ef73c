"""`tracectl leases` and `tracectl resources`: who holds which GPU or volume, and what exists."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from controller.cli.output import Column, Format, OutputOpt, print_list

UrlOpt = Annotated[str, typer.Option("--url", envvar="TRACECTL_URL", help="controller base URL")]
DEFAULT_URL = "http://127.0.0.1:8765"

LEASE_COLUMNS: list[Column] = [
    ("lease", lambda lease: lease["id"], True),
    ("resource", lambda lease: lease["resource"], True),
    ("task", lambda lease: lease["task_id"], True),
    ("mode", lambda lease: lease["mode"], True),
    ("team", lambda lease: lease["team"], False),
    ("fencing", lambda lease: lease["fencing_token"], False),
    ("expires", lambda lease: lease["expires_at"][:19], True),
    ("released", lambda lease: (lease["released_at"] or "")[:19], False),
    ("reason", lambda lease: lease["release_reason"], False),
]


def _use(unit: dict[str, Any]) -> str:
    if unit["kind"] == "quota":
        return f"{unit['in_use']['cpu_milli']}m/{unit['capacity']['cpu_milli']}m cpu"
    capacity = unit["capacity"]
    return f"{unit['in_use']}/{capacity if capacity is not None else '*'}"


RESOURCE_COLUMNS: list[Column] = [
    ("resource", lambda unit: unit["name"], True),
    ("kind", lambda unit: unit["kind"], True),
    ("in_use", _use, True),
    ("holder", lambda unit: unit["holder_task"], True),
    ("queued", lambda unit: unit["queued_demand"], True),
    ("flavor", lambda unit: unit["flavor"], False),
    ("access", lambda unit: unit["access"], False),
    ("in_inventory", lambda unit: unit["in_inventory"], False),
]


def leases(
    all_: Annotated[bool, typer.Option("--all", help="released leases too")] = False,
    task: Annotated[str | None, typer.Option(help="only this task's leases")] = None,
    resource: Annotated[str | None, typer.Option(help="only leases of this unit")] = None,
    limit: int = 100,
    output: OutputOpt = Format.TABLE,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Leases of GPUs, volumes and quotas, oldest first (active ones unless --all)."""
    from controller.cli.main import call, client  # main registers this command: no cycle

    page = call(
        client(url).get,
        "/v1/leases",
        state="all" if all_ else "active",
        task_id=task,
        resource=resource,
        limit=limit,
    )
    print_list(page["items"], LEASE_COLUMNS, output)


def resources(output: OutputOpt = Format.TABLE, url: UrlOpt = DEFAULT_URL) -> None:
    """The inventory (read at start-up): every unit, its use, holder and queued demand."""
    from controller.cli.main import call, client

    print_list(call(client(url).get, "/v1/resources")["items"], RESOURCE_COLUMNS, output)
