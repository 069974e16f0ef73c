"""Check a DAGs folder the way Airflow will load it (run inside Airflow's venv).

``python -m controller.airflow.dagcheck DAGS_DIR [--min-dags N]`` loads every file with Airflow's
``DagBag`` and fails (exit 1) on any import error (cycles are import errors), on a DAG whose
Params defaults do not pass their own schema, or on fewer than N DAGs. One line per DAG on success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def check(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, summary lines) for the DAG files under FOLDER."""
    try:  # Airflow >= 3.1
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # pragma: no cover - Airflow 3.0
        from airflow.models.dagbag import DagBag

    bag: Any = DagBag(dag_folder=str(folder), safe_mode=False)
    problems = [
        f"{path}: {error.strip().splitlines()[-1] if error.strip() else error}"
        for path, error in sorted(bag.import_errors.items())
    ]
    for path, error in sorted(bag.import_errors.items()):
        print(f"--- import error in {path}:\n{error}", file=sys.stderr)
    lines = []
    for dag_id in sorted(bag.dags):
        dag = bag.dags[dag_id]
        try:
            dag.params.validate()
        except Exception as exc:
            problems.append(f"{dag_id}: invalid params: {exc}")
            continue
        try:
            dag.validate()
        except Exception as exc:
            problems.append(f"{dag_id}: {exc}")
            continue
        lines.append(
            f"ok {dag_id}: {len(dag.tasks)} tasks, {len(dag.params)} params "
            f"({Path(dag.fileloc).name})"
        )
    return problems, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.airflow.dagcheck")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--min-dags", type=int, default=1)
    args = parser.parse_args(argv)
    problems, lines = check(args.folder)
    for line in lines:
        print(line)
    if len(lines) < args.min_dags and not problems:
        problems.append(f"found {len(lines)} DAG(s) in {args.folder}, expected >= {args.min_dags}")
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
