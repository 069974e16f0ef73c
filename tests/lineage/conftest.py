"""One demo pipeline run shared by the lineage tests: running it takes most of their time."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from controller.api import routes_lineage
from controller.api.app import create_app
from controller.config import Settings
from controller.demo.pipeline import task_specs
from controller.demo.repo import build_demo_repo
from tests.core.conftest import Api, git, quick_settings


@dataclass
class Demo:
    api: Api
    repo: Path
    remote: Path
    run_id: str
    tasks: dict[str, dict[str, Any]]
    head: str
    md5: str

    def node(self, name: str, path: str) -> str:
        out = next(o for o in self.tasks[name]["lineage"]["outputs"] if o["path"] == path)
        return f"artifact:{out['sha256']}"


def with_lineage_routes(settings: Settings) -> Any:
    app = create_app(settings)
    # The lead wires the router into create_app; until then the tests add it themselves.
    if not any(getattr(r, "path", "") == "/v1/lineage/upstream" for r in app.routes):
        app.include_router(routes_lineage.build_router(app.state.service))
    return app


def run_demo(api: Api, repo: Path, params: dict[str, Any] | None = None) -> str:
    run_id = api.run("wine-classifier")
    ids = [
        api.submit(run_id, body["name"], **body["spec"])["id"]
        for body in task_specs(repo, params or {"n_estimators": 20, "max_depth": 4})
    ]
    for task_id in ids:
        assert api.wait(task_id, timeout=300)["status"] == "succeeded"
    return run_id


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("lineage")
    # preflight's data check is another module's concern (and reads DVC's quoted remote
    # section names wrongly at the time of writing); reproduction does its own remote check.
    settings = quick_settings(root, preflight="data.not_in_remote=warn")
    repo, remote = build_demo_repo(root / "demo")
    with TestClient(with_lineage_routes(settings)) as client:
        api = Api(client, settings)
        run_id = run_demo(api, repo)
        lineage = client.get(f"/v1/runs/{run_id}/lineage").json()
        dvc = yaml.safe_load((repo / "data" / "wine.csv.dvc").read_text())["outs"][0]["md5"]
        assert dvc == hashlib.md5((repo / "data" / "wine.csv").read_bytes()).hexdigest()
        yield Demo(
            api=api,
            repo=repo,
            remote=remote,
            run_id=run_id,
            tasks={t["name"]: t for t in lineage["tasks"]},
            head=git(repo, "rev-parse", "HEAD"),
            md5=dvc,
        )
