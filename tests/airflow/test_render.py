"""controller.airflow.render: pipeline spec (YAML) -> DAG file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.airflow.render import SpecError, render
from tests.stack_fixtures import REPO

EXAMPLE = REPO / "templates" / "pipeline" / "example.yaml"


def write(tmp_path: Path, spec: dict[str, object]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def minimal(**tasks: dict[str, object]) -> dict[str, object]:
    return {"pipeline": "p1", "tasks": tasks or {"a": {"command": ["true"]}}}


def test_example_renders_deterministically() -> None:
    first, second = render(EXAMPLE), render(EXAMPLE)
    assert first == second
    compile(first, "rendered", "exec")
    assert 'dag_id="wine_from_spec"' in first
    assert "TracectlTaskOperator(" in first
    assert "prepare >> train" in first and "train >> evaluate" in first
    assert "minimum=1" in first and "enum=['gini', 'entropy', 'log_loss']" in first
    # the same shape as dags/example_pipeline.py: a service, its smoke test, a stop teardown
    assert "serve = TracectlServiceOperator(" in first
    assert "stop = TracectlStopServiceOperator(" in first
    assert "serve >> smoke_test" in first and "smoke_test >> stop" in first
    assert first.rstrip().endswith("stop.as_teardown(setups=serve)")


def test_a_stop_task_is_the_teardown_of_its_service(tmp_path: Path) -> None:
    spec = minimal(
        web={"command": ["serve"], "mode": "service"},
        probe={"command": ["probe"], "depends_on": ["web"]},
        down={"stop": "web", "depends_on": ["probe"], "airflow": {"retries": 2}},
    )
    source = render(write(tmp_path, {**spec, "defaults": {"image": "img", "timeout_s": 60}}))
    stop = source[source.index("down = "):source.index("    )", source.index("down = "))]
    assert "TracectlStopServiceOperator(" in stop and "service_task_id='web'" in stop
    assert "retries=2" in stop and "image" not in stop and "command" not in stop
    assert "web >> down" in source and "probe >> down" in source
    assert "down.as_teardown(setups=web)" in source


def test_cli_writes_the_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "dag.py"
    subprocess.run([sys.executable, "-m", "controller.airflow.render", str(EXAMPLE), "-o",
                    str(out)], check=True)
    assert out.read_text() == render(EXAMPLE)


def test_dependencies_from_inputs_and_depends_on(tmp_path: Path) -> None:
    spec = minimal(
        c={"command": ["c"], "depends_on": ["b"]},
        a={"command": ["a"], "outputs": ["x"]},
        b={"command": ["b"], "inputs": [{"artifact": "task:a/x", "path": "x"}]},
    )
    source = render(write(tmp_path, spec))
    assert source.index("a = ") < source.index("b = ") < source.index("c = ")
    assert "a >> b" in source and "b >> c" in source


@pytest.mark.parametrize(("spec", "words"), [
    (minimal(a={"command": ["a"], "depends_on": ["b"]}, b={"command": ["b"], "depends_on": ["a"]}),
     "cycle"),
    (minimal(a={"command": ["a"], "depends_on": ["zzz"]}), "unknown task 'zzz'"),
    (minimal(a={"command": ["a"], "gpus": 1}), "unknown keys ['gpus']"),
    (minimal(a={"command": []}), "'command' must be a non-empty list"),
    ({"pipeline": "bad name", "tasks": {"a": {"command": ["a"]}}}, "'pipeline' must match"),
    ({"pipeline": "p", "tasks": {"a": {"command": ["a"]}}, "params": {"n": {"type": "integer"}}},
     "params.n must be a mapping with a 'default'"),
    (minimal(a={"command": ["a"]}, b={"stop": "a"}), "'a', which is not a mode: service task"),
    (minimal(b={"stop": "nope"}), "stop names unknown task 'nope'"),
    (minimal(a={"command": ["a"], "mode": "service"}, b={"stop": "a", "command": ["x"]}),
     "a stop task takes only"),
])
def test_invalid_specs_are_rejected_with_the_key(tmp_path: Path, spec: dict[str, object],
                                                 words: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.yaml") as info:
        render(write(tmp_path, spec))
    assert words in str(info.value)
