"""Item 1 and 4 of issue 19: `tracectl run PIPELINE.yaml`, `runs create|close`, `--param`,
preflight warnings, and a failed task's last log lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import Tracectl, git
from tests.server_process import ServerProcess

PIPELINE = """\
pipeline: greet
params:
  word: {default: hello, type: string, minLength: 1}
  times: {default: 2, type: integer, minimum: 1, maximum: 10}
defaults:
  timeout_s: 120
tasks:
  write:
    command:
      - python
      - -c
      - |
        import os
        os.makedirs('out', exist_ok=True)
        open('out/words.txt', 'w').write(' '.join(['{{ params.word }}'] * {{ params.times }}))
    params: {times: "{{ params.times }}"}
    outputs: [out/words.txt]
  shout:
    command: [python, -c, "print(open('words.txt').read().upper())"]
    inputs: [{artifact: "task:write/out/words.txt", path: words.txt}]
"""


def ids(text: str, kind: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf"\b{kind}_[0-9a-f]+\b", text)))


def test_run_submits_a_pipeline_as_one_run_and_follows_it(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "greet.yaml"
    spec.write_text(PIPELINE)
    result = tracectl(f"run {spec} --param word=bye --param times=3")
    assert result.exit_code == 0, result.output
    run_id = ids(result.output, "run")[0]
    assert f"run {run_id}: succeeded (2/2 tasks done)" in result.output
    # each task's end counts itself and the ends printed before it, never a later one's
    counts = re.findall(r": succeeded \[(\d)/2 tasks done\]", result.output)
    assert counts == ["1", "2"], result.output
    tasks = json.loads(tracectl(f"tasks --run {run_id} -o json").stdout)
    assert {t["name"]: t["status"] for t in tasks} == {"write": "succeeded", "shout": "succeeded"}
    write = next(t for t in tasks if t["name"] == "write")
    assert write["spec"]["params"] == {"times": 3}  # a lone template keeps the param's type
    shout = next(t for t in tasks if t["name"] == "shout")
    logs = tracectl(f"logs {shout['id']}")
    assert "BYE BYE BYE" in logs.stdout


def test_a_param_the_pipeline_does_not_declare_or_allow_is_refused(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "greet.yaml"
    spec.write_text(PIPELINE)
    unknown = tracectl(f"run {spec} --param color=red")
    assert unknown.exit_code == 2 and "--param color" in unknown.output
    too_many = tracectl(f"run {spec} --param times=11")
    assert too_many.exit_code == 2 and "maximum 10" in too_many.output
    airflow_only = tmp_path / "xcom.yaml"
    airflow_only.write_text(
        PIPELINE.replace('{{ params.times }}"}', "{{ ti.xcom_pull(task_ids='a') }}\"}")
    )
    result = tracectl(f"run {airflow_only}")
    assert result.exit_code == 2 and "tasks.write.params.times" in result.output


def test_runs_create_then_submit_into_it_then_close(
    tracectl: Tracectl, project: Path, tmp_path: Path
) -> None:
    created = tracectl("runs create --pipeline by-hand")
    assert created.exit_code == 0, created.output
    run_id = created.stdout.strip()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"command: [python, show.py]\ncode: {{repo: {project}, ref: main}}\nparams: {{lr: 0.1}}\n"
    )
    result = tracectl(
        f"submit {spec} --name show --run {run_id} --param lr=0.5 --param layers=[2,3] --wait"
    )
    assert result.exit_code == 0, result.output
    task_id = ids(result.output, "task")[0]
    printed = [
        line for line in tracectl(f"logs {task_id}").stdout.splitlines() if line.startswith("out {")
    ]
    assert json.loads(printed[0][4:]) == {"lr": 0.5, "layers": [2, 3]}
    assert tracectl(f"runs show {run_id} -o json").stdout.count('"closed_at": null') == 1
    closed = tracectl(f"runs close {run_id}")
    assert closed.exit_code == 0 and f"run {run_id}: closed at" in closed.output
    assert '"closed_at": null' not in tracectl(f"runs show {run_id} -o json").stdout


def test_submit_prints_a_dirty_tree_warning(
    tracectl: Tracectl, project: Path, tmp_path: Path
) -> None:
    (project / "show.py").write_text("print('changed, not committed')\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"command: [python, show.py]\ncode: {{repo: {project}, ref: main}}\n")
    result = tracectl(f"submit {spec} --name dirty")
    assert result.exit_code == 0, result.output
    assert "warning dirty:" in result.stderr and "[code.dirty]" in result.stderr
    git(project, "checkout", "show.py")
    clean = tracectl(f"submit {spec} --name clean")
    assert clean.exit_code == 0 and "[code.dirty]" not in clean.stderr


def test_a_failed_task_shows_its_last_20_lines_and_the_logs_command(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "fail.yaml"
    spec.write_text(
        "command: [python, -c, \"import sys\\nfor i in range(50): print('line', i)"
        '\\nsys.exit(3)"]\n'
    )
    result = tracectl(f"submit {spec} --name boom --wait")
    assert result.exit_code == 1
    task_id = ids(result.output, "task")[0]
    assert "failed (exited with code 3)" in result.output
    shown = [line.split()[-1] for line in result.stderr.splitlines() if " line " in line]
    assert shown[-1] == "49" and len(shown) <= 20 and "30" not in shown[:-20]
    assert "line 29\n" not in result.stderr
    assert f"tracectl logs {task_id}" in result.stderr


def test_run_of_a_failing_pipeline_skips_what_depends_on_the_failure(
    tracectl: Tracectl, tmp_path: Path
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(PIPELINE.replace("import os\n", "import sys; sys.exit('no disk')\n"))
    result = tracectl(f"run {spec}")
    assert result.exit_code == 1, result.output
    assert "task write failed" in result.stderr and "no disk" in result.stderr
    assert "tracectl logs task_" in result.stderr


def refused(tracectl: Tracectl, controller: ServerProcess, spec: Path) -> str:
    """What `tracectl run SPEC` printed; it exited 2 and created no run and no task."""
    before = [controller.get(f"/v1/{what}", limit=1000)["items"] for what in ("runs", "tasks")]
    result = tracectl(f"run {spec}")
    assert result.exit_code == 2, result.output
    assert [controller.get(f"/v1/{w}", limit=1000)["items"] for w in ("runs", "tasks")] == before
    return str(result.output)


def test_a_refused_pipeline_task_leaves_no_run(
    tracectl: Tracectl, controller: ServerProcess, tmp_path: Path
) -> None:
    spec = tmp_path / "wrong-input.yaml"
    spec.write_text(PIPELINE.replace("task:write/out/words.txt", "task:write/out/nope.txt"))
    output = refused(tracectl, controller, spec)
    assert "tasks.shout.inputs.0.artifact: task 'write' declares no output" in output
    assert "declares no output 'out/nope.txt'" in output


LAST_TASK = """\
  report:
    depends_on: [shout]
    command: [python, -c, "print('reported')"]
"""


def test_a_task_after_another_without_data_is_created_with_the_run(
    tracectl: Tracectl, controller: ServerProcess, tmp_path: Path
) -> None:
    spec = tmp_path / "ordered.yaml"
    spec.write_text(PIPELINE + LAST_TASK)
    result = tracectl(f"run {spec}")
    assert result.exit_code == 0, result.output
    run_id = ids(result.output, "run")[0]
    assert f"run {run_id}: succeeded (3/3 tasks done)" in result.output
    created = controller.get(f"/v1/runs/{run_id}/lineage/events")["items"][0]
    assert created["payload"]["tasks"] == ["write", "shout", "report"]  # one request
    tasks = {t["name"]: t for t in controller.get("/v1/tasks", run_id=run_id)["items"]}
    assert tasks["report"]["spec"]["after"] == ["shout"]
    assert tasks["report"]["started_at"] >= tasks["shout"]["finished_at"]


def test_a_pipeline_whose_last_task_is_invalid_creates_no_run_and_no_task(
    tracectl: Tracectl, controller: ServerProcess, tmp_path: Path
) -> None:
    spec = tmp_path / "bad-last.yaml"
    spec.write_text(PIPELINE + LAST_TASK + "    code: {repo: /nonexistent/repo}\n")
    output = refused(tracectl, controller, spec)
    assert "nothing was created. Fix in the pipeline file:" in output
    assert "tasks.report.code.repo: git repository '/nonexistent/repo' does not exist" in output
