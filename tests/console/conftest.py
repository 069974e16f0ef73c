"""A controller on a loopback port with one GPU, and headless Chromium driven by Selenium."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from controller.server import EmbeddedServer
from tests.core.conftest import quick_settings
from tests.waiting import wait_for

ONE_GPU = "gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 1}]\n"
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Console:
    url: str
    http: httpx.Client

    def run(self, pipeline: str, **extra: Any) -> str:
        response = self.http.post("/v1/runs", json={"pipeline": pipeline, **extra})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def submit(self, run_id: str, name: str, code: str, **spec: Any) -> str:
        body = {"name": name, "spec": {"command": [sys.executable, "-c", code], **spec}}
        response = self.http.post(f"/v1/runs/{run_id}/tasks", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/tasks/{task_id}").json())

    def wait(self, task_id: str, *statuses: str, timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            task = self.task(task_id)
            return task if task["status"] in (statuses or TERMINAL) else None

        return wait_for(f"task {task_id} to reach {statuses or TERMINAL}", reached, timeout, 0.1)


def chromium_options(width: int = 1400, height: int = 1000) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return options


def start_browser(width: int = 1400, height: int = 1000) -> WebDriver:
    driver = shutil.which("chromedriver")
    assert driver is not None, "chromedriver is missing (scripts/test installs chromium-driver)"
    return webdriver.Chrome(service=Service(driver), options=chromium_options(width, height))


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    inventory = root / "inventory.yaml"
    inventory.write_text(ONE_GPU)
    settings = quick_settings(
        root, inventory_file=inventory, kibana_url="http://kibana.example:5601"
    )
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield Console(url=server.url, http=http)


@pytest.fixture(scope="package")
def browser() -> Iterator[WebDriver]:
    driver = start_browser()
    yield driver
    driver.quit()


def until(driver: WebDriver, check: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    ).until(check)
