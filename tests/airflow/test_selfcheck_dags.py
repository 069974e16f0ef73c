"""The self-check DAGs that bench/airflow_overhead.py compares on (one per executor) load in
Airflow's venv, and each gives its peer operator and the two tracectl tasks the same command;
on Kubernetes also the same image, on the real node, with the host's network."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.airflow.conftest import DAGS

SHAPES = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id in ("tracectl_selfcheck", "tracectl_selfcheck_kubernetes"):
    dag = bag.dags.get(dag_id)
    out["dags"][dag_id] = {
        t.task_id: {
            "argv": getattr(t, "cmds", None) or getattr(t, "command", None)
            or getattr(t, "bash_command", None),
            "image": getattr(t, "image", None),
            "node": getattr(t, "node_selector", None),
            "host_network": getattr(t, "hostnetwork", None),
            "deferrable": getattr(t, "deferrable", None),
        }
        for t in dag.tasks
    } if dag else None
print("SHAPES " + json.dumps(out))
"""


def shapes(airflow_python: Path) -> dict[str, object]:
    out = subprocess.run(
        [str(airflow_python), "-c", SHAPES, str(DAGS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("SHAPES "))
    return dict(json.loads(line.removeprefix("SHAPES ")))


def test_each_self_check_dag_runs_one_command_three_ways_and_the_kubernetes_one_in_one_image(
    airflow_python: Path,
) -> None:
    found = shapes(airflow_python)
    assert found["errors"] == {}
    dags = found["dags"]
    assert isinstance(dags, dict)
    local, kube = dags["tracectl_selfcheck"], dags["tracectl_selfcheck_kubernetes"]
    assert sorted(local) == ["awaited", "bash", "deferred"]
    assert local["bash"]["argv"] == "{{ params.command | shjoin }}"
    assert sorted(kube) == ["awaited", "deferred", "kpo"]
    assert {kube[t]["argv"] for t in kube} == {"{{ params.command }}"}
    assert {kube[t]["image"] for t in kube} == {"{{ params.image }}"}
    assert kube["kpo"]["node"] == {"kubernetes.io/hostname": "localhost"}
    assert kube["kpo"]["host_network"] is True
    for dag in (local, kube):
        assert dag["awaited"]["deferrable"] is False and dag["deferred"]["deferrable"] is True
