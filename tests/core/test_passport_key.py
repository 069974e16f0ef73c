"""The passport's HMAC key is a setting (TRACECTL_PASSPORT_KEY), read once with the others."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.core.passport import check


def test_a_passport_is_sealed_with_the_key_in_the_controllers_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACECTL_PASSPORT_KEY", "seal-key")
    settings = Settings.from_env(home=tmp_path / "home")
    assert settings.passport_key == "seal-key"
    with TestClient(create_app(settings, run_supervisor=False)) as client:
        run = client.post("/v1/runs", json={"pipeline": "p"}).json()["id"]
        passport = client.get(f"/v1/runs/{run}/passport").json()
    assert "hmac_sha256" in passport
    assert check(passport, "seal-key") == []
    assert check(passport, "another key") != []
