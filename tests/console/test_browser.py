"""The console in headless Chromium: runs, a run, a task and its live log, resources, look-up."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.console.conftest import Console, until

STEPS = """
import sys
for i in range(40):
    print(f"INFO step {i} loss {1 / (i + 1):.3f}", flush=True)
print("WARNING learning rate is high", file=sys.stderr, flush=True)
print("ERROR diverged at step 40", file=sys.stderr, flush=True)
sys.exit(3)
"""
SLOW = """
import sys, time
for i in range(120):
    print(f"INFO tick {i}", flush=True)
    if i % 10 == 9:
        print(f"ERROR late tick {i}", file=sys.stderr, flush=True)
    time.sleep(0.25)
"""
WRITE = "open('model.txt', 'w').write('weights 42\\n'); print('INFO wrote model.txt')"
HOLD = "import time; time.sleep(120)"


def texts(browser: WebDriver, css: str) -> list[str]:
    """The text of every element CSS matches, read in one step (the log re-renders)."""
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText)"
    return list(browser.execute_script(script, css))


def test_the_runs_list_leads_to_a_run_and_its_failed_task(
    console: Console, browser: WebDriver
) -> None:
    run_id = console.run("mnist-train", airflow_dag_id="mnist")
    ok = console.submit(run_id, "prepare", WRITE, outputs=["model.txt"])
    bad = console.submit(run_id, "train", STEPS, params={"lr": 0.5, "epochs": 3}, retries=1)
    assert console.wait(ok)["status"] == "succeeded"
    assert console.wait(bad)["status"] == "failed"

    browser.get(f"{console.url}/")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]'))
    assert browser.current_url.endswith("/ui/runs")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]')
    assert "mnist-train" in row.text and "failed" in row.text and "mnist" in row.text
    failed = browser.find_element(By.CSS_SELECTOR, '.count[data-status="failed"] b')
    assert int(failed.text) >= 1

    Select(browser.find_element(By.NAME, "status")).select_by_visible_text("succeeded")
    browser.find_element(By.CSS_SELECTOR, "#run-filters button").click()
    until(
        browser,
        lambda b: (
            "status=succeeded" in b.current_url and b.find_elements(By.CSS_SELECTOR, "footer")
        ),
    )
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]')
    browser.find_element(By.NAME, "pipeline").send_keys("mnist-train")
    Select(browser.find_element(By.NAME, "status")).select_by_visible_text("failed")
    browser.find_element(By.CSS_SELECTOR, "#run-filters button").click()
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]'))

    browser.find_element(By.LINK_TEXT, run_id).click()
    until(browser, lambda b: b.find_elements(By.ID, "gantt"))
    assert "mnist-train" in browser.find_element(By.TAG_NAME, "h1").text
    bars = browser.find_elements(By.CSS_SELECTOR, "#gantt g.attempt")
    assert [b.get_attribute("data-task") for b in bars].count(bad) == 2  # the retry too
    assert {b.get_attribute("data-status") for b in bars} == {"succeeded", "failed"}
    train = browser.find_element(By.CSS_SELECTOR, f'tr.task-row[data-task="{bad}"]')
    assert "exit code 3" in train.text or "3" in train.find_element(By.CLASS_NAME, "failure").text
    assert "lr" in train.text and "0.5" in train.text and "1 retry" in train.text
    kibana = train.find_element(By.LINK_TEXT, "Kibana Discover").get_attribute("href")
    assert "kibana.example:5601/app/discover" in kibana and bad in kibana
    assert "labels.task_id" in kibana
    assert browser.find_elements(By.CSS_SELECTOR, "#lineage svg g.node-task")

    train.find_element(By.LINK_TEXT, "train").click()
    until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#log-lines .line")) >= 40)
    assert "train" in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_element(By.ID, "failure").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")) == 2
    Select(browser.find_element(By.NAME, "stream")).select_by_visible_text("stderr")
    until(
        browser,
        lambda b: (
            len(lines := texts(b, "#log-lines .line")) == 2
            and "WARNING" in lines[0]
            and "ERROR" in lines[1]
        ),
    )
    Select(browser.find_element(By.NAME, "level")).select_by_visible_text("error")
    until(
        browser,
        lambda b: len(lines := texts(b, "#log-lines .line")) == 1 and "diverged" in lines[0],
    )
    Select(browser.find_element(By.NAME, "level")).select_by_visible_text("any")
    Select(browser.find_element(By.NAME, "stream")).select_by_visible_text("all")
    browser.find_element(By.NAME, "text").send_keys("loss 0.5")
    until(
        browser,
        lambda b: (
            [t.split("INFO ")[-1] for t in texts(b, "#log-lines .line")] == ["step 1 loss 0.500"]
        ),
    )
    sha = browser.find_element(By.ID, "log-sha256").text
    assert len(sha) == 64


def test_log_lines_arrive_while_the_task_runs_and_filter_live(
    console: Console, browser: WebDriver
) -> None:
    run_id = console.run("live")
    task_id = console.submit(run_id, "ticker", SLOW)
    console.wait(task_id, "running")
    browser.get(f"{console.url}/ui/tasks/{task_id}")
    until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#log-lines .line.stdout")) >= 3)
    first = len(browser.find_elements(By.CSS_SELECTOR, "#log-lines .line"))
    assert console.task(task_id)["status"] == "running"
    until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#log-lines .line")) > first + 3)
    assert console.task(task_id)["status"] == "running"  # these came while it ran

    Select(browser.find_element(By.NAME, "level")).select_by_visible_text("error")
    until(
        browser,
        lambda b: (
            texts(b, "#log-lines .line")
            and all("late tick" in t for t in texts(b, "#log-lines .line"))
        ),
    )
    seen = len(texts(browser, "#log-lines .line"))
    until(browser, lambda b: len(texts(b, "#log-lines .line")) > seen, timeout=60)
    until(browser, lambda b: "ended" in b.find_element(By.ID, "log-state").text, timeout=120)
    assert texts(browser, "#log-lines .line")[-1].endswith("late tick 119")
    assert len(texts(browser, "#log-lines .line")) == 12

    Select(browser.find_element(By.NAME, "level")).select_by_visible_text("any")
    browser.find_element(By.NAME, "line").send_keys("50")
    browser.find_element(By.ID, "log-jump").click()
    until(
        browser,
        lambda b: (
            b.find_elements(By.CSS_SELECTOR, "#log-lines .line")
            and b.find_element(By.CSS_SELECTOR, "#log-lines .line").get_attribute("data-seq")
            == "50"
        ),
    )


def test_resources_show_the_holder_and_two_queued_gpu_tasks(
    console: Console, browser: WebDriver
) -> None:
    run_id = console.run("gpus")
    gpu = {"resources": {"gpu": 1}}
    holder = console.submit(run_id, "holder", HOLD, **gpu)
    console.wait(holder, "running")
    waiting = [console.submit(run_id, f"waiter{i}", HOLD, **gpu) for i in (1, 2)]
    for task_id in waiting:
        console.wait(task_id, "queued")
    try:
        browser.get(f"{console.url}/ui/runs")
        browser.find_element(By.ID, "nav-resources").click()
        until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#queue tr.queued")) == 2)
        queued = browser.find_elements(By.CSS_SELECTOR, "#queue tr.queued")
        assert [q.get_attribute("data-task") for q in queued] == waiting
        assert [q.find_element(By.TAG_NAME, "td").text for q in queued] == ["1", "2"]
        assert all(
            "1 GPU" in q.text and q.find_element(By.CLASS_NAME, "reason").text for q in queued
        )
        held = browser.find_element(By.ID, "held").text
        assert "holder" in held and "gpu:gpu-worker:0" in held
        pools = browser.find_element(By.ID, "pools").text
        assert "gpu-worker" in pools
        assert browser.find_elements(By.CSS_SELECTOR, "#lease-history rect.lease")
    finally:
        console.http.post(f"/v1/runs/{run_id}/cancel")
    for task_id in [holder, *waiting]:
        console.wait(task_id)


def test_the_look_up_box_answers_with_producer_and_runs(
    console: Console, browser: WebDriver
) -> None:
    run_id = console.run("lookup")
    task_id = console.submit(run_id, "writer", WRITE, outputs=["model.txt"])
    assert console.wait(task_id)["status"] == "succeeded"
    sha = console.http.get(f"/v1/tasks/{task_id}/artifacts").json()[0]["sha256"]

    browser.get(f"{console.url}/ui/runs")
    box = browser.find_element(By.ID, "lookup-box")
    box.send_keys(sha[:12], Keys.ENTER)
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".answer"))
    answer = browser.find_element(By.CSS_SELECTOR, '.answer[data-kind="artifact"]')
    assert sha in answer.text
    assert "writer" in answer.find_element(By.CLASS_NAME, "producers").text
    assert run_id in answer.find_element(By.CLASS_NAME, "runs").text
    answer.find_element(By.LINK_TEXT, "writer").click()
    until(browser, lambda b: "writer" in b.find_element(By.TAG_NAME, "h1").text)

    browser.find_element(By.ID, "lookup-box").send_keys("f" * 40, Keys.ENTER)
    until(browser, lambda b: b.find_elements(By.ID, "lookup-none"))


def test_the_api_docs_render_offline(console: Console, browser: WebDriver) -> None:
    browser.get(f"{console.url}/docs")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
    assert "/v1/runs" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui").text
    browser.get(f"{console.url}/redoc")
    until(browser, lambda b: "/v1/runs" in b.find_element(By.TAG_NAME, "body").text)
    for page in ("/docs", "/redoc"):
        assert "cdn" not in console.http.get(page).text.lower()


MANY = "for i in range(1, 1301): print(f'INFO line {i}' if i % 100 else f'ERROR line {i}')"


def seqs(browser: WebDriver) -> list[int]:
    script = (
        "return Array.from(document.querySelectorAll('#log-lines .line')).map(e => e.dataset.seq)"
    )
    return [int(x) for x in browser.execute_script(script)]


def numbers(browser: WebDriver) -> list[int]:
    """The N of each `... line N` shown (the task's own lines)."""
    return [int(t.split("line ")[-1]) for t in texts(browser, "#log-lines .line") if "line " in t]


def jump(browser: WebDriver, line: int) -> None:
    browser.find_element(By.NAME, "line").clear()
    browser.find_element(By.NAME, "line").send_keys(str(line))
    browser.find_element(By.ID, "log-jump").click()


def test_the_log_viewer_pages_back_from_a_jump(console: Console, browser: WebDriver) -> None:
    run_id = console.run("paging")
    task_id = console.submit(run_id, "many", MANY)
    console.wait(task_id, "succeeded")
    browser.get(f"{console.url}/ui/tasks/{task_id}")
    until(browser, lambda b: len(seqs(b)) == 500)
    assert browser.find_element(By.ID, "log-prev").get_attribute("disabled")  # at line 1
    jump(browser, 1001)
    until(browser, lambda b: seqs(b)[:1] == [1001])
    after_jump = seqs(browser)  # 1001 to the end of the log
    browser.find_element(By.ID, "log-prev").click()  # the 500 lines before 1001, above them
    until(browser, lambda b: len(seqs(b)) == len(after_jump) + 500)
    assert seqs(browser) == list(range(501, 1001)) + after_jump
    Select(browser.find_element(By.NAME, "level")).select_by_visible_text("error")
    jump(browser, 1001)
    until(browser, lambda b: numbers(b) == [1000, 1100, 1200, 1300])
    browser.find_element(By.ID, "log-prev").click()  # filtered too: the ERROR lines before
    until(browser, lambda b: len(numbers(b)) == 13)
    assert numbers(browser) == list(range(100, 1301, 100))
    assert browser.find_element(By.ID, "log-prev").get_attribute("disabled")
