"""`tracectl trace …` against the API (the CLI's HTTP client talks to the test app)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from controller.cli import main
from controller.cli.client import Client
from controller.cli.lineage_commands import lineage_app
from tests.lineage.conftest import Demo


@pytest.fixture
def cli(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    def client(url: str) -> Client:
        api = Client(url)
        api.http = demo.api.client  # a TestClient is an httpx.Client
        return api

    monkeypatch.setattr(main, "client", client)
    return CliRunner()


def test_upstream_lookup_diff_and_prov(cli: CliRunner, demo: Demo) -> None:
    metrics = demo.node("evaluate", "metrics.json")
    result = cli.invoke(lineage_app, ["upstream", metrics, "--json"])
    assert result.exit_code == 0, result.output
    assert f"data:data/wine.csv@{demo.md5}" in {n["id"] for n in json.loads(result.output)}
    result = cli.invoke(lineage_app, ["downstream", f"data:data/wine.csv@{demo.md5}"])
    assert result.exit_code == 0 and "metrics.json" in result.output
    result = cli.invoke(lineage_app, ["lookup", "--commit", demo.head])
    assert result.exit_code == 0 and demo.tasks["train"]["id"] in result.output
    result = cli.invoke(lineage_app, ["diff", demo.run_id, demo.run_id])
    assert result.exit_code == 0 and "model/model.pkl" in result.output
    result = cli.invoke(lineage_app, ["prov", demo.run_id])
    assert result.exit_code == 0 and "wasGeneratedBy" in result.output


def test_errors_exit_with_the_documented_codes(cli: CliRunner) -> None:
    assert cli.invoke(lineage_app, ["upstream", "nonsense:1"]).exit_code == 2
    assert cli.invoke(lineage_app, ["lookup", "--mlflow-run-id", "nope"]).exit_code == 3
    assert cli.invoke(lineage_app, ["reproduce", "run-nope"]).exit_code == 3
