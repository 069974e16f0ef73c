"""Every `tracectl …` command the README and docs/ name exists as written (a user copies them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import typer

from controller.cli.main import app

REPO = Path(__file__).resolve().parents[2]
# `tracectl WORD [WORD]` where a command starts: a span's start, after .venv/bin/, $(, ;, &&, |
MENTION = re.compile(
    r"(?:^\s*|\.venv/bin/|\$\(|; |&& |\| |if )tracectl "
    r"([a-z][a-z-]*)(?: ([a-z][a-z-]*)(?![\w./-]))?"
)
DEFAULT_SUBCOMMAND = {"logs", "runs"}  # `tracectl logs TASK`, `tracectl runs` (the list)


def code_spans(text: str) -> Iterator[str]:
    """Lines of fenced blocks and inline `code` spans: where commands are written."""
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif fenced:
            yield line
        else:
            yield from re.findall(r"`([^`]+)`", line)


def problems(text: str) -> Iterator[str]:
    root = typer.main.get_command(app)
    commands = getattr(root, "commands", {})
    grouped = {n for c in commands.values() for n in getattr(c, "commands", {})}
    for span in code_spans(text):
        for first, second in MENTION.findall(span):
            command = commands.get(first)
            subcommands = getattr(command, "commands", None)
            if command is None:
                yield f"`tracectl {first}`: no such command ({span})"
            elif subcommands is not None and second and first not in DEFAULT_SUBCOMMAND:
                if second not in subcommands:
                    yield f"`tracectl {first} {second}`: no such subcommand ({span})"
            elif subcommands is None and second in grouped:
                yield f"`tracectl {first} {second}`: {first} has no subcommands ({span})"


def test_every_command_the_docs_name_exists() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [f"{p.name}: {issue}" for p in pages for issue in problems(p.read_text())]
    assert found == []


def test_a_command_that_does_not_exist_is_found() -> None:
    text = "rebuilt by `tracectl lineage reproduce`, then\n```bash\ntracectl trace replay RUN\n```"
    assert len(list(problems(text))) == 2
