""".gitlab-ci.yml run locally by gitlab-ci-local (shell executor): render -> dag-check -> deploy.

The repository (tracked and untracked, not ignored, files) is copied into a fresh git repo so
the run has a real $CI_COMMIT_SHA and leaves nothing behind in the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from controller.airflow.deploy import COMMIT_MARKER, read_commit
from controller.airflow.render import render
from tests.stack_fixtures import REPO

pytestmark = pytest.mark.slow
GCL_VERSION = "4.65.1"  # later releases need Node >= 22 (Set.prototype.union)
CACHE = Path(os.environ.get("TRACECTL_CACHE", Path.home() / ".cache" / "tracectl"))


def gitlab_ci_local() -> Path:
    prefix = CACHE / "gitlab-ci-local"
    binary = prefix / "node_modules" / ".bin" / "gitlab-ci-local"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed to install gitlab-ci-local (apt-get install nodejs npm)")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(prefix),
                f"gitlab-ci-local@{GCL_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    if shutil.which("rsync") is None:
        pytest.fail("gitlab-ci-local needs rsync (apt-get install rsync)")
    return binary


def snapshot(dest: Path) -> str:
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@tracectl.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], cwd=dest, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.timeout(1800)
def test_render_dag_check_and_deploy_jobs(tmp_path: Path) -> None:
    binary = gitlab_ci_local()
    project, deployed = tmp_path / "project", tmp_path / "airflow-dags"
    project.mkdir()
    sha = snapshot(project)
    started = time.monotonic()
    out = subprocess.run(
        [
            str(binary),
            "--force-shell-executor",
            "--shell-isolation",
            "--no-artifacts-to-source",
            "--variable",
            f"AIRFLOW_DAGS_DIR={deployed}",
            "--variable",
            f"TRACECTL_CACHE={CACHE}",
            "--variable",
            f"UV_CACHE_DIR={Path.home() / '.cache' / 'uv'}",
            "--needs",
            "deploy",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=1700,
    )
    log = out.stdout + out.stderr
    print(f"gitlab-ci-local render+dag-check+deploy: {time.monotonic() - started:.1f}s")
    assert out.returncode == 0, log[-6000:]
    for job in ("render", "dag-check", "deploy"):
        assert f"PASS  {job}" in log, log[-6000:]
    # prepare, train, evaluate, register, serve, smoke_test and the stop teardown
    assert "ok example_pipeline: 7 tasks" in log
    assert "ok wine_from_spec: 7 tasks" in log

    files = sorted(p.relative_to(deployed).as_posix() for p in deployed.rglob("*") if p.is_file())
    assert files == [
        COMMIT_MARKER,
        "example_pipeline.py",
        "rendered_example.py",
        "tracectl_selfcheck.py",
        "tracectl_selfcheck_kubernetes.py",
    ]
    assert (deployed / "example_pipeline.py").read_bytes() == (
        REPO / "dags" / "example_pipeline.py"
    ).read_bytes()
    assert (deployed / "rendered_example.py").read_text() == render(
        REPO / "templates" / "pipeline" / "example.yaml"
    )
    assert (deployed / COMMIT_MARKER).read_text().split()[0] == sha
    assert read_commit(deployed / "example_pipeline.py") == sha


def test_deploy_sync_removes_stale_files(tmp_path: Path) -> None:
    from controller.airflow.deploy import sync

    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "sub").mkdir(parents=True)
    (src / "a.py").write_text("A = 1\n")
    (src / "sub" / "b.py").write_text("B = 1\n")
    sync(src, dest, "1" * 40)
    (src / "sub" / "b.py").unlink()
    (src / "a.py").write_text("A = 2\n")
    sync(src, dest, "2" * 40)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [COMMIT_MARKER, "a.py"]
    assert (dest / "a.py").read_text() == "A = 2\n"
    assert read_commit(dest / "a.py") == "2" * 40
