"""controller.airflow.render: pipeline spec (YAML) -> DAG file."""

from __future__ import annotations

import json
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
    stop = source[source.index("down = ") : source.index("    )", source.index("down = "))]
    assert "TracectlStopServiceOperator(" in stop and "service_task_id='web'" in stop
    assert "retries=2" in stop and "image" not in stop and "command" not in stop
    assert "web >> down" in source and "probe >> down" in source
    assert "down.as_teardown(setups=web)" in source


def test_cli_writes_the_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "dag.py"
    subprocess.run(
        [sys.executable, "-m", "controller.airflow.render", str(EXAMPLE), "-o", str(out)],
        check=True,
    )
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


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            minimal(
                a={"command": ["a"], "depends_on": ["b"]}, b={"command": ["b"], "depends_on": ["a"]}
            ),
            "cycle",
        ),
        (minimal(a={"command": ["a"], "depends_on": ["zzz"]}), "unknown task 'zzz'"),
        (minimal(a={"command": ["a"], "gpus": 1}), "unknown keys ['gpus']"),
        (minimal(a={"command": []}), "'command' must be a non-empty list"),
        ({"pipeline": "bad name", "tasks": {"a": {"command": ["a"]}}}, "'pipeline' must match"),
        (
            {
                "pipeline": "p",
                "tasks": {"a": {"command": ["a"]}},
                "params": {"n": {"type": "integer"}},
            },
            "params.n must be a mapping with a 'default'",
        ),
        (minimal(a={"command": ["a"]}, b={"stop": "a"}), "'a', which is not a mode: service task"),
        (minimal(b={"stop": "nope"}), "stop names unknown task 'nope'"),
        (
            minimal(a={"command": ["a"], "mode": "service"}, b={"stop": "a", "command": ["x"]}),
            "a stop task takes only",
        ),
    ],
)
def test_invalid_specs_are_rejected_with_the_key(
    tmp_path: Path, spec: dict[str, object], words: str
) -> None:
    with pytest.raises(SpecError, match=r"spec\.yaml") as info:
        render(write(tmp_path, spec))
    assert words in str(info.value)


def test_models_name_versions_or_the_task_that_registered_them(tmp_path: Path) -> None:
    spec = minimal(
        register={"command": ["register"]},
        serve={"command": ["serve"], "mode": "service", "models": ["task:register"]},
        batch={"command": ["score"], "models": ["models:/fixed/3", "task:register"]},
    )
    source = render(write(tmp_path, spec))
    pull = "{{ ti.xcom_pull(task_ids='register', key='model_versions') }}"
    serve = source[source.index("serve = ") : source.index("    )", source.index("serve = "))]
    assert f'models="{pull}"' in serve  # one template alone: it renders to the list itself
    batch = source[source.index("batch = ") : source.index("    )", source.index("batch = "))]
    assert f"models=['models:/fixed/3', \"{pull}\"]" in batch
    assert "register >> serve" in source and "register >> batch" in source
    assert "models=" in render(EXAMPLE)


@pytest.mark.parametrize(
    ("models", "words"),
    [
        (["task:nope"], "depends on unknown task 'nope'"),
        (["wine/1"], "models[0] 'wine/1' is none of models:/<name>/<version>"),
        ("models:/wine/1", "models must be a list of strings"),
    ],
)
def test_bad_models_are_rejected_with_the_item(tmp_path: Path, models: object, words: str) -> None:
    with pytest.raises(SpecError) as info:
        render(write(tmp_path, minimal(a={"command": ["a"], "models": models})))
    assert words in str(info.value) and "tasks.a" in str(info.value)


def test_rendered_models_reach_the_task_spec(airflow_python: Path, tmp_path: Path) -> None:
    """In Airflow's venv: the rendered DAG loads, and the operator's spec flattens what a native
    template rendering of ``models`` gives (a list per pulled XCom)."""
    dag_file = tmp_path / "wine_from_spec.py"
    dag_file.write_text(render(EXAMPLE))
    script = f"""
import importlib.util, json
spec = importlib.util.spec_from_file_location("wine_from_spec", {str(dag_file)!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
serve = module.dag.get_task("serve")
serve.models = [["models:/wine/4"], "models:/extra/1", None]  # as rendered from the XCom
print(json.dumps({{"upstream": sorted(serve.upstream_task_ids),
                   "models": serve.build_spec()["models"]}}))
"""
    out = subprocess.run(
        [str(airflow_python), "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "register" in result["upstream"]
    assert result["models"] == ["models:/wine/4", "models:/extra/1"]
