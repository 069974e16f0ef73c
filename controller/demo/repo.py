"""Makes the demo's git repository: example code plus DVC-tracked data pushed to a remote."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import git

EXAMPLE_FILES = (
    "common.py",
    "prepare.py",
    "train.py",
    "evaluate.py",
    "make_dataset.py",
    "register.py",
    "serve.py",
    "smoke_test.py",
    "report.py",
    "README.md",
    "pyproject.toml",
    "uv.lock",
)


def example_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "examples" / "wine", here.parent / "example_wine"):
        if (candidate / "train.py").exists():
            return candidate
    raise FileNotFoundError("the example pipeline (examples/wine) is not installed")


def build_demo_repo(root: Path, remote: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Create ROOT/repo (git + DVC) and ROOT/dvc-remote; return their paths.

    REMOTE, when given, is the DVC remote's config instead (`{"url": "s3://…",
    "endpointurl": …}`): what a pod can reach, where ROOT/dvc-remote is only on this host.
    """
    from dvc.repo import Repo as DvcRepo

    # DVC's advice ("You can now commit the changes to git", "To track the changes with git,
    # run: ...") is for a person at a DVC prompt; this function commits everything itself.
    logging.getLogger("dvc").setLevel(logging.WARNING)

    repo_path, local_remote = root / "repo", root / "dvc-remote"
    if repo_path.exists():
        shutil.rmtree(repo_path)
    repo_path.mkdir(parents=True)
    local_remote.mkdir(parents=True, exist_ok=True)
    source = example_dir()
    for name in EXAMPLE_FILES:
        shutil.copy2(source / name, repo_path / name)
    subprocess.run(
        [sys.executable, "make_dataset.py", "data/wine.csv"],
        cwd=repo_path,
        check=True,
        capture_output=True,
    )
    repository = git.Repo.init(repo_path, initial_branch="main")
    with repository.config_writer() as config:
        config.set_value("user", "name", "tracectl demo")
        config.set_value("user", "email", "demo@tracectl.invalid")
    dvc = DvcRepo.init(str(repo_path))
    with dvc.config.edit() as conf:
        conf["remote"]["storage"] = remote or {"url": str(local_remote.resolve())}
        conf["core"]["remote"] = "storage"
    dvc.add(str((repo_path / "data" / "wine.csv").resolve()))
    dvc.push()
    dvc.close()
    repository.git.add(A=True)
    repository.index.commit("wine example: code and DVC-tracked data")
    return repo_path, local_remote
