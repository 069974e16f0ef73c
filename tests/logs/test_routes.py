"""GET /v1/logs/search without a search index: a clear 409, not a 500."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from controller.api import routes_logs
from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService


def test_search_needs_a_search_index_reader(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path}/m.db")
    service = ControllerService(settings)
    app = create_app(settings, service=service, run_supervisor=False)
    app.include_router(routes_logs.build_router(service))
    with TestClient(app) as client:
        response = client.get("/v1/logs/search", params={"text": "boom"})
    assert response.status_code == 409
    assert "opensearch://" in response.text
