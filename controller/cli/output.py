"""How list and show commands print: `-o table|wide|json|yaml`, ids never cut off."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer


class Format(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


OutputOpt = Annotated[
    Format,
    typer.Option("-o", "--output", help="table (default), wide (more columns), json or yaml"),
]

# A column: header, the function that reads it from an item, shown in `table` (not only wide).
Column = tuple[str, Callable[[dict[str, Any]], Any], bool]


def cell(value: Any) -> str:
    return "" if value is None else str(value)


def table(items: Sequence[dict[str, Any]], columns: Sequence[Column], wide: bool) -> str:
    """Plain columns, two spaces apart, never wrapped or cut (so every id can be copied)."""
    shown = [c for c in columns if wide or c[2]]
    rows = [[c[0].upper() for c in shown]]
    rows += [[cell(c[1](item)) for c in shown] for item in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(shown))]
    return (
        "\n".join(
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )
        + "\n"
    )


def document(data: Any, fmt: Format) -> str:
    if fmt is Format.YAML:
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6))
    return json.dumps(data, indent=2) + "\n"


def print_list(items: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: Format) -> None:
    if fmt in (Format.JSON, Format.YAML):
        sys.stdout.write(document(list(items), fmt))
    else:
        sys.stdout.write(table(items, columns, fmt is Format.WIDE))


def print_one(item: dict[str, Any], columns: Sequence[Column], fmt: Format) -> None:
    """One record: `table`/`wide` as FIELD  VALUE lines, json/yaml in full."""
    if fmt in (Format.JSON, Format.YAML):
        sys.stdout.write(document(item, fmt))
        return
    shown = [c for c in columns if fmt is Format.WIDE or c[2]]
    width = max(len(c[0]) for c in shown)
    sys.stdout.write("".join(f"{c[0].upper().ljust(width)}  {cell(c[1](item))}\n" for c in shown))
