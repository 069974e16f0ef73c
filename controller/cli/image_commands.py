"""`tracectl image build`: the task runtime or controller image as an OCI image, without Docker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli import term

console = term.console(highlight=False)
err = term.console(stderr=True, highlight=False)

image_app = typer.Typer(no_args_is_help=True, help="Task images built without Docker.")

DEFAULT_CACHE = Path.home() / ".cache" / "tracectl" / "images"
REPO_ROOT = Path(__file__).resolve().parents[2]


@image_app.command("build")
def build(
    registry: Annotated[
        str, typer.Option(envvar="TRACECTL_REGISTRY", help="registry host:port (plain HTTP)")
    ] = "127.0.0.1:5001",
    repository: Annotated[
        str | None, typer.Option(help="repository in the registry [default: tracectl/<target>]")
    ] = None,
    tag: Annotated[str, typer.Option(help="tag pushed with the image")] = "0.1.0",
    requirements: Annotated[
        Path | None,
        typer.Option(help="a task environment (requirements / `uv export` file): its own layer"),
    ] = None,
    lock: Annotated[
        Path | None,
        typer.Option(help="a task environment from a uv.lock (pyproject.toml beside it)"),
    ] = None,
    base_only: Annotated[bool, typer.Option(help="Debian + Python only, no tracectl")] = False,
    target: Annotated[
        str, typer.Option(help="runtime (task pods) or controller (`tracectl server`)")
    ] = "runtime",
    source: Annotated[Path, typer.Option(help="the tracectl source tree")] = REPO_ROOT,
    cache: Annotated[
        Path, typer.Option(envvar="TRACECTL_IMAGE_CACHE", help="root filesystems and layers")
    ] = DEFAULT_CACHE,
    mirror: Annotated[str, typer.Option(help="Debian mirror for debootstrap")] = (
        "http://deb.debian.org/debian"
    ),
) -> None:
    """Build the runtime or controller image (Debian + Python + tracectl), push it, print
    `ref@sha256:...`."""
    from controller.images.build import BuildRequest, ImageBuildError
    from controller.images.build import build as build_image

    if requirements is not None and not requirements.is_file():
        err.print(
            f"[red]error:[/] --requirements {requirements}: no such file; give a requirements file"
        )
        raise typer.Exit(2)
    if target not in ("runtime", "controller"):
        err.print(f"[red]error:[/] --target {target}: give runtime or controller")
        raise typer.Exit(2)
    if lock is not None and not (lock.is_file() and (lock.parent / "pyproject.toml").is_file()):
        err.print(
            f"[red]error:[/] --lock {lock}: give a uv.lock file with its pyproject.toml beside it"
        )
        raise typer.Exit(2)
    if lock is not None and requirements is not None:
        err.print("[red]error:[/] give --lock or --requirements, not both")
        raise typer.Exit(2)
    request = BuildRequest(
        registry=registry,
        repository=repository or f"tracectl/{target}",
        target=target,
        tag=tag,
        source=source,
        cache=cache,
        mirror=mirror,
        requirements=requirements,
        lock=lock,
        base_only=base_only,
    )
    try:
        image = build_image(request)
    except ImageBuildError as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(image.reference, soft_wrap=True)
