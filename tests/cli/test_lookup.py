"""Item 7 of issue 19: `tracectl trace lookup` takes unique short SHAs (7+ hex digits)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from controller.config import Settings
from controller.store.database import Database
from controller.store.lineage_schema import LineageEdgeRow
from tests.cli.conftest import Tracectl, git
from tests.server_process import ServerProcess


def test_short_commits_and_hashes_find_what_the_full_ones_find(
    tracectl: Tracectl, controller: ServerProcess, project: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"command: [python, -c, \"open('made.txt', 'w').write('{tmp_path.name}')\"]\n"
        f"code: {{repo: {project}, ref: main}}\noutputs: [made.txt]\n"
    )
    submitted = tracectl(f"submit {spec} --name make --wait")
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.split()[1]
    head = git(project, "rev-parse", "HEAD")
    sha = httpx.get(f"{controller.url}/v1/tasks/{task_id}/artifacts").json()[0]["sha256"]

    by_commit = tracectl(f"trace lookup --commit {head[:7]}")
    assert by_commit.exit_code == 0, by_commit.output
    found = json.loads(by_commit.stdout)
    assert found["node"] == f"commit:{head}" and task_id in {u["task_id"] for u in found["used_by"]}
    by_hash = tracectl(f"trace lookup --sha256 {sha[:10]}")
    assert by_hash.exit_code == 0, by_hash.output
    assert json.loads(by_hash.stdout)["produced_by"][0]["task_id"] == task_id


def test_ambiguous_short_and_unknown_prefixes_are_errors(
    tracectl: Tracectl, controller: ServerProcess, project: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f'command: [python, -c, "print(1)"]\ncode: {{repo: {project}, ref: main}}\n')
    submitted = tracectl(f"submit {spec} --name use --wait")
    assert submitted.exit_code == 0, submitted.output
    task = json.loads(tracectl(f"tasks {submitted.stdout.split()[1]} -o json").stdout)
    head = git(project, "rev-parse", "HEAD")
    twin = head[:7] + ("0" if head[7] != "0" else "1") + head[8:]  # same first 7 digits
    db = Database(Settings(home=controller.home).store_url)
    with db.write() as session:  # a second commit recorded in the same run
        session.add(
            LineageEdgeRow(
                src=f"commit:{twin}",
                dst=f"task:{task['id']}",
                kind="used",
                path="",
                run_id=task["run_id"],
                task_id=task["id"],
                event_id=0,
            )
        )

    ambiguous = tracectl(f"trace lookup --commit {head[:7]}")
    assert ambiguous.exit_code == 2
    assert head in ambiguous.output and twin in ambiguous.output
    assert tracectl(f"trace lookup --commit {head[:8]}").exit_code == 0
    missing = tracectl("trace lookup --commit 0123456789")
    assert missing.exit_code == 3 and "no recorded commit starts with" in missing.output
    assert tracectl(f"trace lookup --sha256 {'e' * 64}").exit_code == 3  # full, nothing recorded
    short = tracectl("trace lookup --commit abc12")
    assert short.exit_code == 2 and "7 to 40 hex digits" in short.output
