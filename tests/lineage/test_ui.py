"""The console's run page draws one SVG node per task and renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.lineage.conftest import Demo

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "lineage-ui.png"


def test_page_draws_the_run(demo: Demo) -> None:
    response = demo.api.client.get(f"/ui/runs/{demo.run_id}")
    assert response.status_code == 200
    html = response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<svg" in html
    # no CDN: every script and style sheet comes from the controller itself
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html)
    assert len(re.findall(r'class="node node-task"', html)) == 3
    for name, task in demo.tasks.items():
        assert f"task: {name}" in html
        assert f"/ui/tasks/{task['id']}" in html
    assert demo.head[:12] in html and "wine.csv" in html
    assert demo.api.client.get("/ui/runs/run-nope").status_code == 404


def test_page_renders_in_headless_chromium(demo: Demo, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None, (
        "chromium is not installed (scripts/test installs it as root; "
        "else apt-get install -y chromium)"
    )
    page = tmp_path / "run.html"
    # a file:// page cannot fetch /ui/static: the style sheet goes inline
    style = demo.api.client.get("/ui/static/console.css").text
    html = demo.api.client.get(f"/ui/runs/{demo.run_id}").text
    page.write_text(
        html.replace(
            '<link rel="stylesheet" href="/ui/static/console.css">', f"<style>{style}</style>"
        )
    )
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1500,900",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
    shutil.copyfile(shot, SCREENSHOT)
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--dump-dom",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert len(re.findall(r'class="node node-task"', dom)) == 3
