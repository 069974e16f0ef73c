"""Screenshots of the console for docs/img/: runs, a run, a task with its log, resources.

Run by scripts/screenshots: a controller with one GPU on a loopback port, a few runs made
through the API (one fails after a retry, GPU tasks queue behind a holder), and headless
Chromium driven by Selenium taking each page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By

from controller.config import Settings
from controller.server import EmbeddedServer
from tests.console.conftest import ONE_GPU, Console, start_browser, until

OUT = Path(__file__).resolve().parents[2] / "docs" / "img"
TRAIN = """
import sys, time
for epoch in range(1, 4):
    for step in range(0, 200, 20):
        print(f"INFO epoch {epoch} step {step} loss {2.0 / (epoch * 10 + step / 20):.4f}",
              flush=True)
    print(f"INFO epoch {epoch} val_accuracy {0.80 + epoch * 0.04:.3f}", flush=True)
print("WARNING learning rate schedule ended early", file=sys.stderr, flush=True)
open("model.pt", "w").write("weights")
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""
PREPARE = "open('train.csv', 'w').write('a,b\\n1,2\\n'); print('INFO wrote 2 rows')"
FLAKY = "import sys; print('ERROR CUDA out of memory', file=sys.stderr); sys.exit(137)"
HOLD = "import time; print('INFO holding the GPU', flush=True); time.sleep(300)"


def populate(console: Console) -> dict[str, str]:
    ids: dict[str, str] = {}
    for i in range(3):
        old = console.run(f"nightly-eval-{i}", airflow_dag_id="nightly_eval")
        console.wait(console.submit(old, "evaluate", PREPARE))
    run_id = console.run("mnist-train", airflow_dag_id="mnist_train")
    prepare = console.submit(run_id, "prepare", PREPARE, outputs=["train.csv"])
    console.wait(prepare)
    train = console.submit(
        run_id,
        "train",
        TRAIN,
        params={"lr": 0.01, "epochs": 3, "batch_size": 64},
        outputs=["model.pt"],
    )
    flaky = console.submit(run_id, "export-onnx", FLAKY, retries=2)
    console.wait(train)
    console.wait(flaky)
    ids["run"], ids["task"] = run_id, train
    gpus = console.run("gpu-sweep", airflow_dag_id="sweep")
    gpu = {"resources": {"gpu": 1}}
    holder = console.submit(gpus, "sweep-lr-0.1", HOLD, **gpu)
    console.wait(holder, "running")
    for lr in ("0.01", "0.001"):
        console.wait(console.submit(gpus, f"sweep-lr-{lr}", HOLD, **gpu), "queued")
    ids["gpus"], ids["live"] = gpus, holder
    return ids


def shoot(url: str, ids: dict[str, str]) -> None:
    browser = start_browser(1400, 1000)
    try:
        pages = {
            "console-runs.png": "/ui/runs",
            "console-run.png": f"/ui/runs/{ids['run']}",
            "console-task.png": f"/ui/tasks/{ids['task']}",
            "console-resources.png": "/ui/resources",
        }
        for name, path in pages.items():
            browser.get(url + path)
            until(browser, lambda b: b.find_elements(By.TAG_NAME, "footer"))
            if "tasks" in path:
                until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".line")) > 20)
                browser.execute_script("document.getElementById('outputs').scrollIntoView()")
            browser.save_screenshot(str(OUT / name))
            print("wrote", OUT / name, file=sys.stderr)
    finally:
        browser.quit()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tracectl-shots-") as tmp:
        root = Path(tmp)
        (root / "inventory.yaml").write_text(ONE_GPU)
        settings = Settings(
            home=root / "home",
            supervisor_interval_s=0.05,
            retry_backoff_s=0.1,
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            inventory_file=root / "inventory.yaml",
            kibana_url="http://kibana.example:5601",
        )
        with (
            EmbeddedServer(settings) as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            console = Console(url=server.url, http=http)
            ids = populate(console)
            try:
                shoot(server.url, ids)
            finally:
                http.post(f"/v1/runs/{ids['gpus']}/cancel")
                console.wait(ids["live"])


if __name__ == "__main__":
    main()
