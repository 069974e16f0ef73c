"""What a new user met on a project of their own (issue 19, tried again): each command as they
typed it, and what it now says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Tracectl, git
from tests.server_process import ServerProcess

PIPELINE = """\
pipeline: linefit
params:
  repo: {default: ".", type: string}
  n: {default: 20, type: integer, minimum: 10}
defaults:
  code: {repo: "{{ params.repo }}", ref: main}
  timeout_s: 120
tasks:
  make:
    command: [python, make.py]
    params: {n: "{{ params.n }}"}
    outputs: [points.csv]
  fit:
    command: [python, fit.py]
    inputs: [{artifact: "task:make/points.csv", path: points.csv}]
    outputs: [model.json]
"""
MAKE = """\
import json, os
n = json.load(open(os.environ["TRACECTL_PARAMS_FILE"]))["n"]
open("points.csv", "w").write("".join(f"{x},{3 * x + 2}\\n" for x in range(n)))
"""
FIT = """\
import json
rows = [tuple(map(float, line.split(","))) for line in open("points.csv")]
(x0, y0), (x1, y1) = rows[0], rows[-1]
json.dump({"a": (y1 - y0) / (x1 - x0)}, open("model.json", "w"))
print("fitted", len(rows), "points")
"""


@pytest.fixture(scope="module")
def linefit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose pipeline file names its own folder as `repo: "."`, committed."""
    repo = tmp_path_factory.mktemp("linefit")
    git(repo, "init", "-q", "-b", "main")
    (repo / "make.py").write_text(MAKE)
    (repo / "fit.py").write_text(FIT)
    (repo / "pipeline.yaml").write_text(PIPELINE)
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "fit")
    return repo


@pytest.fixture(scope="module")
def finished(linefit: Path, controller: ServerProcess) -> dict[str, str]:
    """One run of the pipeline by `tracectl run`: its run id and output."""
    from typer.testing import CliRunner

    from controller.cli.main import app

    result = CliRunner().invoke(
        app,
        ["run", str(linefit / "pipeline.yaml"), "--param", f"repo={linefit}"],
        env={"TRACECTL_URL": controller.url},
    )
    assert result.exit_code == 0, result.output
    run_id = re.findall(r"\brun_[0-9a-f]+\b", result.output)[0]
    return {"run": run_id, "output": result.output}


def task_id(tracectl: Tracectl, run_id: str, name: str) -> str:
    tasks = json.loads(tracectl(f"tasks --run {run_id} -o json").stdout)
    return str(next(t["id"] for t in tasks if t["name"] == name))


def test_a_pipeline_that_names_its_own_folder_as_repo_runs_from_anywhere(
    tracectl: Tracectl, linefit: Path
) -> None:
    # the controller's working directory is not the project: "." is the pipeline file's folder
    result = tracectl(f"run {linefit / 'pipeline.yaml'}")
    assert result.exit_code == 0, result.output
    assert "succeeded (2/2 tasks done)" in result.output
    assert (
        f"{linefit} @ "
        in tracectl(f"lineage {re.findall(r'run_[0-9a-f]+', result.output)[0]}").output
    )


def test_a_warning_every_task_shares_is_printed_once_naming_them_all(
    finished: dict[str, str],
) -> None:
    printed = " ".join(finished["output"].split())
    assert printed.count("[code.unpushed]") == 1, finished["output"]
    assert "warning make, fit: commit" in printed


def test_check_takes_the_pipeline_file_that_run_takes(tracectl: Tracectl, linefit: Path) -> None:
    ok = tracectl(f"check {linefit / 'pipeline.yaml'} --param n=30")
    assert ok.exit_code == 0, ok.output
    assert "warn make:" in ok.output and "warn fit:" in ok.output
    gpu = linefit.parent / "gpu-check.yaml"
    gpu.write_text(PIPELINE.replace("  fit:\n", "  fit:\n    resources: {gpu: 1}\n"))
    refused = tracectl(f"check {gpu} --param repo={linefit}")
    assert refused.exit_code == 1, refused.output
    assert "refuse fit: no GPU in the inventory" in refused.output
    assert "`tracectl resources`" in refused.output  # the command, beside the API route
    bad = tracectl(f"check {linefit / 'pipeline.yaml'} --param n=3")
    assert bad.exit_code == 2 and "--param n=3: breaks minimum 10" in bad.output


def test_a_refused_submit_names_the_field_in_the_spec_file(
    tracectl: Tracectl, project: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "gpu.yaml"
    spec.write_text(
        f"command: [python, show.py]\ncode: {{repo: {project}}}\nresources: {{gpu: 1}}\n"
    )
    result = tracectl(f"submit {spec} --name gpu")
    printed = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "resources.gpu: no GPU in the inventory (it has: no GPUs)" in printed
    assert "tasks.0.spec" not in printed and "flavor any" not in printed


def test_a_refused_pipeline_names_each_problem_once(
    tracectl: Tracectl, linefit: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "gpu-pipeline.yaml"
    spec.write_text(PIPELINE.replace("  fit:\n", "  fit:\n    resources: {gpu: 1}\n"))
    result = tracectl(f"run {spec} --param repo={linefit}")
    assert result.exit_code == 2, result.output
    assert "tasks.fit.resources.gpu: no GPU in the inventory" in result.output
    assert "tasks.1.spec" not in result.output  # the controller's own paths, said twice


def test_an_unknown_key_says_which_key_was_meant(tracectl: Tracectl, tmp_path: Path) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text(PIPELINE.replace("timeout_s: 120", "timeout: 120"))
    result = tracectl(f"run {spec}")
    assert result.exit_code == 2
    assert "defaults: unknown keys ['timeout']; did you mean 'timeout' -> 'timeout_s'?" in (
        " ".join(result.output.split())
    )


def test_lineage_of_a_task_is_its_branch_of_the_tree(
    tracectl: Tracectl, finished: dict[str, str]
) -> None:
    fit = task_id(tracectl, finished["run"], "fit")
    tree = tracectl(f"lineage {fit}")
    assert tree.exit_code == 0, tree.output
    assert f"task fit succeeded {fit}" in tree.output and "task make" not in tree.output
    assert re.search(r"env +env:[0-9a-f]{64} ", tree.output), tree.output  # never cut off
    assert re.search(r"logs +\d+ lines sha256:[0-9a-f]{64}\n", tree.output), tree.output
    as_yaml = yaml.safe_load(tracectl(f"lineage {finished['run']} -o yaml").stdout)
    assert [t["name"] for t in as_yaml["tasks"]] == ["make", "fit"]
    assert tracectl("lineage points.csv").exit_code == 2


def test_trace_walks_take_a_task_id_and_a_short_sha_and_print_whole_ids(
    tracectl: Tracectl, finished: dict[str, str]
) -> None:
    fit = task_id(tracectl, finished["run"], "fit")
    by_task = tracectl(f"trace upstream {fit}")
    assert by_task.exit_code == 0, by_task.output
    points = re.search(r"artifact:([0-9a-f]{64})", by_task.output)
    assert points, by_task.output
    by_prefix = tracectl(f"trace downstream artifact:{points[1][:10]}")
    assert by_prefix.exit_code == 0, by_prefix.output
    assert f"task:{fit}" in by_prefix.output
    assert tracectl("trace downstream commit:deadbeef00").exit_code == 3


def test_filters_that_match_nothing_say_why(tracectl: Tracectl, finished: dict[str, str]) -> None:
    fit = task_id(tracectl, finished["run"], "fit")
    since = tracectl(f"logs {fit} --since yesterday")
    assert since.exit_code == 2 and "30s, 10m, 2h, 1d" in since.output
    status = tracectl("tasks --status done")
    assert status.exit_code == 2 and "--status: Input should be 'pending'" in status.output
    limit = tracectl("tasks --limit 0")  # named as the option, not as the API's query.limit
    assert limit.exit_code == 2 and "--limit: Input should be greater than" in limit.output
    assert tracectl("tasks --run run_doesnotexist").exit_code == 3


def test_lookup_names_its_own_options(tracectl: Tracectl) -> None:
    none = tracectl("trace lookup")
    assert none.exit_code == 2 and "--sha256, --uri" in none.output
    two = tracectl("trace lookup --commit abcdef1 --sha256 abcdef1")
    assert two.exit_code == 2 and "(got --sha256, --commit)" in two.output


def test_a_task_spec_with_a_relative_repo_is_refused_at_submit(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    # resolved against the controller's working directory, it would fail only at checkout
    spec = tmp_path / "relative.yaml"
    spec.write_text("command: [python, show.py]\ncode: {repo: ., ref: main}\n")
    result = tracectl(f"submit {spec} --name relative")
    printed = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "code.repo: git repository '.' is a relative path" in printed


def test_logs_takes_its_options_before_the_task_too(
    tracectl: Tracectl, finished: dict[str, str]
) -> None:
    fit = task_id(tracectl, finished["run"], "fit")
    result = tracectl(f"logs --tail 1 --stream out {fit}")
    assert result.exit_code == 0, result.output
    assert result.stdout == "out fitted 20 points\n"
    assert "--tail N" in tracectl("logs --help").output


def test_params_print_as_json_and_diff_prints_whole_values_on_one_line(
    tracectl: Tracectl, finished: dict[str, str], linefit: Path
) -> None:
    assert f'params {{"repo": "{linefit}", "n": 20}}' in finished["output"]
    again = tracectl(f"run {linefit / 'pipeline.yaml'} --param repo={linefit} --param n=30")
    assert again.exit_code == 0, again.output
    other = re.findall(r"\brun_[0-9a-f]+\b", again.output)[0]
    tree = tracectl(f"lineage {other}").output
    assert 'params  {"n": 30}' in tree
    diff = tracectl(f"trace diff {finished['run']} {other}")
    assert diff.exit_code == 0, diff.output
    rows = {" ".join(line.split()[:2]): line.split() for line in diff.stdout.splitlines()}
    assert rows["make params"][2:] == ['{"n":20}', '{"n":30}', "NO"]
    commit = git(linefit, "rev-parse", "HEAD")
    assert rows["fit code"][2:] == [commit, commit, "yes"]
    assert re.fullmatch(r"[0-9a-f]{64}", rows["make output"][3]), diff.stdout
    assert f"A  {finished['run']}" in diff.stdout  # the column headers say A and B


def test_a_run_not_followed_says_how_to_see_it(tracectl: Tracectl, linefit: Path) -> None:
    result = tracectl(f"run {linefit / 'pipeline.yaml'} --no-wait")
    assert result.exit_code == 0, result.output
    run_id = re.findall(r"\brun_[0-9a-f]+\b", result.output)[0]
    assert f"tracectl tasks --run {run_id}" in result.output


def test_a_task_spec_and_a_pipeline_given_to_the_other_command_say_which_to_use(
    tracectl: Tracectl, linefit: Path, tmp_path: Path
) -> None:
    submitted = tracectl(f"submit {linefit / 'pipeline.yaml'} --name fit")
    assert submitted.exit_code == 2
    assert f"run it with `tracectl run {linefit / 'pipeline.yaml'}`" in (
        " ".join(submitted.output.split())
    )
    spec = tmp_path / "one.yaml"
    spec.write_text("command: [python, fit.py]\n")
    ran = tracectl(f"run {spec}")
    assert ran.exit_code == 2
    assert f"submit it with `tracectl submit {spec} --name NAME`" in " ".join(ran.output.split())


BROKEN = """\
pipeline: broken
tasks:
  first:
    command: [python, -c, "import sys; sys.exit('boom')"]
    outputs: [x.txt]
  second:
    command: [python, -c, "print(1)"]
    inputs: [{artifact: "task:first/x.txt", path: x.txt}]
"""


def test_a_task_that_never_ran_shows_no_empty_log(tracectl: Tracectl, tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    result = tracectl(f"run {spec}")
    printed = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "task first failed (exited with code 1); the last" in printed
    assert "err boom" in printed
    assert "task second cancelled (upstream task 'first' failed)" in printed
    assert "the last 0 log lines" not in printed
    assert printed.count("all of it: tracectl logs") == 1


def test_no_controller_says_how_to_start_one(tracectl: Tracectl) -> None:
    result = tracectl("runs --url http://127.0.0.1:9")  # the discard port: nothing listens
    printed = " ".join(result.output.split())
    assert result.exit_code == 4
    assert "start one with `tracectl server --home DIR`" in printed and "TRACECTL_URL" in printed
    helped = " ".join(tracectl("server --help").output.split())
    assert "./.tracectl" in helped and "port of the API" in helped


def test_cancelling_a_running_task_says_it_is_stopping(
    tracectl: Tracectl, controller: ServerProcess, tmp_path: Path
) -> None:
    from tests.waiting import wait_for

    spec = tmp_path / "sleep.yaml"
    spec.write_text('command: [python, -c, "import time; print(1, flush=True); time.sleep(120)"]\n')
    made = tracectl(f"submit {spec} --name sleeper")
    assert made.exit_code == 0, made.output
    task = re.findall(r"\btask_[0-9a-f]+\b", made.output)[0]
    wait_for("the task to run", lambda: controller.get(f"/v1/tasks/{task}")["status"] == "running")
    result = tracectl(f"cancel {task}")
    assert result.exit_code == 0, result.output
    assert f"task {task}: running, stopping (SIGTERM, then SIGKILL)" in result.output
    ended = wait_for(
        "the cancel", lambda: controller.get(f"/v1/tasks/{task}")["status"] == "cancelled"
    )
    assert ended


def test_reproduce_prints_whole_hashes_and_each_task_that_did_not_succeed(
    tracectl: Tracectl, finished: dict[str, str], tmp_path: Path
) -> None:
    again = tracectl(f"trace reproduce {finished['run']}")
    assert again.exit_code == 0, again.output
    assert re.search(r"fit +model\.json +([0-9a-f]{64}) +\1 +yes", again.stdout), again.stdout
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    broken = re.findall(r"\brun_[0-9a-f]+\b", tracectl(f"run {spec}").output)[0]
    result = tracectl(f"trace reproduce {broken}")
    assert "task first: failed in the reproduction (failed in the original)" in result.output
    assert "task second: cancelled in the reproduction" in result.output


SERVICE = """\
pipeline: svc
tasks:
  serve:
    mode: service
    command:
      - python
      - -c
      - |
        import http.server, os
        address = ("127.0.0.1", int(os.environ["PORT"]))
        http.server.HTTPServer(address, http.server.SimpleHTTPRequestHandler).serve_forever()
  ping:
    depends_on: [serve]
    command: [python, -c, "print('pinging')"]
  stop:
    stop: serve
    depends_on: [ping]
"""


def test_a_stop_task_is_not_counted_as_a_task_still_to_do(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(SERVICE)
    result = tracectl(f"run {spec}")
    assert result.exit_code == 0, result.output
    assert "of svc: 2 tasks" in result.output
    assert re.search(r"run run_\w+: succeeded \(2/2 tasks done\)", result.output), result.output
