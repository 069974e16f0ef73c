"""With auth on, the console asks for a token, keeps it in a cookie, and scopes by team."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By

from controller.api.app import create_app
from controller.auth.tokens import create_token
from controller.config import Settings
from controller.server import EmbeddedServer
from tests.console.conftest import start_browser, until


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(
        home=tmp_path / "home", auth="tokens", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    app = create_app(settings, run_supervisor=False)
    with TestClient(app, base_url="http://console.test") as client:
        db = app.state.service.db
        yield (
            client,
            {"red": create_token(db, "alice", "red"), "blue": create_token(db, "bob", "blue")},
        )


def runs_of(client: TestClient, token: str) -> str:
    response = client.post(
        "/v1/runs", json={"pipeline": "p"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201
    return str(response.json()["id"])


def test_a_page_without_a_login_leads_to_the_login_form(secured) -> None:  # type: ignore[no-untyped-def]
    client, tokens = secured
    response = client.get("/ui/runs?status=failed", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fruns%3Fstatus%3Dfailed"
    form = client.get(response.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text
    assert client.get("/ui/tasks/t/lines", follow_redirects=False).status_code == 303
    # the login cookie counts under /ui only: no cross-site form reaches /v1 with it
    cookie = {"Cookie": f"tracectl_token={tokens['red']}"}
    assert client.get("/v1/runs", headers=cookie).status_code == 401
    assert client.get("/ui/runs", headers=cookie, follow_redirects=False).status_code == 200


def test_a_bad_token_is_refused_and_a_good_one_logs_in(secured) -> None:  # type: ignore[no-untyped-def]
    client, tokens = secured
    bad = client.post(
        "/ui/login", data={"token": "tct_wrong", "next": "/ui/runs"}, follow_redirects=False
    )
    assert bad.status_code == 303 and "failed=1" in bad.headers["location"]
    assert "tracectl_token" not in bad.cookies
    good = client.post(
        "/ui/login", data={"token": tokens["red"], "next": "/ui/resources"}, follow_redirects=False
    )
    assert good.status_code == 303 and good.headers["location"] == "/ui/resources"
    assert "httponly" in good.headers["set-cookie"].lower()
    assert client.get("/ui/resources").status_code == 200
    away = client.post(
        "/ui/login",
        data={"token": tokens["red"], "next": "https://evil.test/"},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/ui/runs"  # no open redirect


def test_the_console_shows_a_team_its_own_runs_only(secured) -> None:  # type: ignore[no-untyped-def]
    client, tokens = secured
    red, blue = runs_of(client, tokens["red"]), runs_of(client, tokens["blue"])
    client.cookies.set("tracectl_token", tokens["red"])
    listed = client.get("/ui/runs").text
    assert red in listed and blue not in listed
    assert "alice@red" in listed
    assert client.get(f"/ui/runs/{red}").status_code == 200
    assert client.get(f"/ui/runs/{blue}").status_code == 404


def test_logging_in_through_the_browser(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home", auth="tokens", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    with EmbeddedServer(settings) as server:
        token = create_token(server.server.config.app.state.service.db, "carol", "green")
        browser = start_browser()
        try:
            browser.get(f"{server.url}/ui/resources")
            until(browser, lambda b: b.find_elements(By.NAME, "token"))
            browser.find_element(By.NAME, "token").send_keys(token)
            browser.find_element(By.CSS_SELECTOR, "#login button").click()
            until(
                browser,
                lambda b: (
                    b.current_url.endswith("/ui/resources") and b.find_elements(By.ID, "queue")
                ),
            )
            assert "carol@green" in browser.find_element(By.CLASS_NAME, "who").text
            browser.find_element(By.CSS_SELECTOR, ".who button").click()
            until(browser, lambda b: b.find_elements(By.NAME, "token"))
            browser.get(f"{server.url}/ui/runs")
            until(browser, lambda b: "/ui/login" in b.current_url)
        finally:
            browser.quit()
