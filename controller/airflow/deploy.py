"""Publish a DAGs folder to where Airflow reads it, stamped with the commit it came from.

``python -m controller.airflow.deploy SRC DEST --commit SHA`` makes DEST hold exactly the
``*.py`` files (and the folders with them) of SRC, plus ``.tracectl-dag-commit`` (the SHA, then
the time). Each file is written to a temporary name and renamed, so Airflow's DAG processor
never parses a half-written file; files that are no longer in SRC are removed. The operators
put the marker's commit in the tracectl Run's labels (``dag_commit``), so a DAG run's lineage
names the commit of the DAG that made it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

COMMIT_MARKER = ".tracectl-dag-commit"
SKIP_PARTS = frozenset({"__pycache__", ".git", ".pytest_cache"})


def _files(root: Path) -> set[Path]:
    found = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if (
            path.is_file()
            and not SKIP_PARTS.intersection(rel.parts)
            and path.suffix
            in (".py", ".sql", ".yaml", ".yml", ".json", ".md", ".airflowignore", "")
            and path.name != COMMIT_MARKER
        ):
            found.add(rel)
    return found


def read_commit(fileloc: str | Path | None) -> str | None:
    """The commit a deployed DAG file came from: the marker in its folder or up to 3 above."""
    if not fileloc:
        return None
    folder = Path(fileloc).resolve().parent
    for candidate in (folder, *list(folder.parents)[:3]):
        marker = candidate / COMMIT_MARKER
        if marker.is_file():
            words = marker.read_text().split()
            return words[0] if words else None
    return None


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tracectl-tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def sync(src: Path, dest: Path, commit: str) -> list[str]:
    """Make DEST mirror SRC's DAG files; write the commit marker; return the copied paths."""
    if not src.is_dir():
        raise FileNotFoundError(f"DAGs folder {src} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    wanted = _files(src)
    for rel in sorted(wanted):
        data = (src / rel).read_bytes()
        target = dest / rel
        if not target.is_file() or target.read_bytes() != data:
            _write_atomic(target, data)
    for rel in sorted(_files(dest) - wanted, reverse=True):
        (dest / rel).unlink()
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir()), reverse=True):
        if folder.name == "__pycache__" or not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
    stamp = f"{commit}\n{datetime.now(UTC).isoformat(timespec='seconds')}\n"
    _write_atomic(dest / COMMIT_MARKER, stamp.encode())
    return [str(p) for p in sorted(wanted)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controller.airflow.deploy",
        description="Publish a DAGs folder with a commit marker.",
    )
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--commit", required=True, help="the commit the DAGs come from")
    args = parser.parse_args(argv)
    copied = sync(args.src, args.dest, args.commit)
    print(f"deployed {len(copied)} file(s) from {args.src} to {args.dest} at {args.commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
