"""Rich consoles made on first use, so commands that print plain text never import rich."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class _LazyConsole:
    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


def console(**options: Any) -> Console:
    """A rich Console with OPTIONS, built (and rich imported) at its first use."""
    return cast("Console", _LazyConsole(**options))


def escape(text: str) -> str:
    """rich's markup escape."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def table(*headers: str, **options: Any) -> Table:
    """A rich Table (rich imported here, at the first table)."""
    from rich.table import Table

    return Table(*headers, **options)
