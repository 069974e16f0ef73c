"""Render a pipeline spec (YAML, ``templates/pipeline/*.yaml``) into an Airflow DAG file.

``render(spec_path) -> str`` returns the DAG's Python source. The output is deterministic (same
spec, same bytes): no timestamps, keys kept in the spec's order, tasks in a stable topological
order. ``python -m controller.airflow.render SPEC [-o OUT]`` does the same from a shell.

Spec format (see templates/pipeline/example.yaml)::

    pipeline: wine_classifier        # dag_id and tracectl pipeline name
    description: ...
    schedule: null                   # cron, preset (@daily) or null
    start_date: "2026-01-01"
    tags: [tracectl]
    connection: tracectl_default     # optional
    defaults:                        # merged into every task (task keys win)
      image: python:3.11-slim
      code: {repo: "{{ params.git_repo }}", ref: "{{ params.git_ref }}"}
    params:                          # Airflow Params: default + JSON-schema keywords
      n_estimators: {default: 50, type: integer, minimum: 1}
    tasks:
      prepare:
        command: [python, prepare.py]
        outputs: [prepared/train.csv]
      train:
        command: [python, train.py]
        inputs: [{artifact: "task:prepare/prepared/train.csv", path: train.csv}]
        depends_on: []               # extra upstreams; task:<name>/ inputs add their own
      stop:
        stop: serve                  # teardown of service task `serve` (no command)
        depends_on: [smoke_test]

Task keys: command, image, env, secret_env, code, data, inputs, outputs, params, resources,
timeout_s, retries, priority, mode (job|service), depends_on, models, airflow (extra operator
arguments such as ``retries`` or ``execution_timeout_s``). ``models`` lists the registered model
versions a task reads: ``models:/<name>/<version>``, or ``task:<name>`` for the versions that
task registered (its XCom ``model_versions``; it becomes an upstream). A task with
``stop: <service task>`` becomes a ``TracectlStopServiceOperator``, the teardown of that service
(it closes the run so the controller stops the service); it takes only ``depends_on`` and
``airflow`` besides.
"""

from __future__ import annotations

import argparse
import pprint
import re
import sys
from pathlib import Path
from typing import Any

TEMPLATE_NAME = "dag.py.j2"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
TASK_KEYS = frozenset(
    {
        "command",
        "image",
        "env",
        "secret_env",
        "code",
        "data",
        "inputs",
        "outputs",
        "params",
        "resources",
        "timeout_s",
        "retries",
        "priority",
        "mode",
        "depends_on",
        "airflow",
        "stop",
        "models",
    }
)
STOP_TASK_KEYS = frozenset({"stop", "depends_on", "airflow"})
TOP_KEYS = frozenset(
    {
        "pipeline",
        "description",
        "schedule",
        "start_date",
        "tags",
        "connection",
        "defaults",
        "params",
        "tasks",
        "max_active_runs",
    }
)
PARAM_KEYWORDS = frozenset(
    {
        "default",
        "type",
        "description",
        "title",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "enum",
        "items",
        "format",
        "multipleOf",
        "minItems",
        "maxItems",
        "const",
        "examples",
    }
)
MODEL_URI, TASK_REF = "models:/", "task:"
AIRFLOW_KEYS = frozenset(
    {
        "retries",
        "retry_delay_s",
        "execution_timeout_s",
        "pool",
        "trigger_rule",
        "deferrable",
        "poll_timeout_s",
    }
)


class SpecError(ValueError):
    """The pipeline spec is invalid; the message names the file and the offending key."""


def default_template_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "templates" / "pipeline", here.parent / "templates"):
        if (candidate / TEMPLATE_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"{TEMPLATE_NAME} not found next to {here}")


def py(value: Any) -> str:
    """A Python literal for VALUE (deterministic, keys in their given order)."""
    return pprint.pformat(value, width=88, sort_dicts=False, compact=False)


def indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join((pad + line) if i else line for i, line in enumerate(text.splitlines()))


def load(spec_path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(spec_path)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: a pipeline spec is a mapping with 'pipeline' and 'tasks'")
    return validate(spec, str(path))


def unknown_keys(at: str, bad: list[str], allowed: set[str] | frozenset[str]) -> str:
    """The message for keys a task does not take, with the one each was likely meant to be."""
    import difflib

    hints = [
        f"{key!r} -> {close[0]!r}"
        for key in bad
        if (close := difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6))
    ]
    meant = f"; did you mean {', '.join(hints)}?" if hints else ""
    return f"{at}: unknown keys {bad}{meant} (allowed: {sorted(allowed)})"


def validate(spec: dict[str, Any], where: str = "spec") -> dict[str, Any]:
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        raise SpecError(unknown_keys(where, unknown, TOP_KEYS))
    name = spec.get("pipeline")
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(f"{where}: 'pipeline' must match {NAME.pattern} (it is the dag_id)")
    tasks = spec.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise SpecError(f"{where}: 'tasks' must be a non-empty mapping of name -> task")
    for key, param in (spec.get("params") or {}).items():
        if not NAME.match(str(key)):
            raise SpecError(f"{where}: params.{key}: names must match {NAME.pattern}")
        if not isinstance(param, dict) or "default" not in param:
            raise SpecError(f"{where}: params.{key} must be a mapping with a 'default'")
        bad = sorted(set(param) - PARAM_KEYWORDS)
        if bad:
            raise SpecError(f"{where}: params.{key}: unknown keywords {bad}")
    defaults = spec.get("defaults") or {}
    bad_defaults = sorted(set(defaults) - TASK_KEYS | set(defaults) & {"stop"})
    if bad_defaults:
        raise SpecError(unknown_keys(f"{where}: defaults", bad_defaults, TASK_KEYS - {"stop"}))
    for task_name, task in tasks.items():
        at = f"{where}: tasks.{task_name}"
        if not TASK_NAME.match(str(task_name)):
            raise SpecError(f"{at}: task names must match {TASK_NAME.pattern}")
        if not isinstance(task, dict):
            raise SpecError(f"{at} must be a mapping")
        bad = sorted(set(task) - TASK_KEYS)
        if bad:
            raise SpecError(unknown_keys(at, bad, TASK_KEYS))
        if "stop" in task:
            _check_stop_task(at, task, tasks, defaults)
            continue
        merged = {**defaults, **task}
        command = merged.get("command")
        if not isinstance(command, list) or not command:
            raise SpecError(f"{at}: 'command' must be a non-empty list (argv)")
        if merged.get("mode", "job") not in ("job", "service"):
            raise SpecError(f"{at}: mode must be job or service")
        bad_af = sorted(set(merged.get("airflow") or {}) - AIRFLOW_KEYS)
        if bad_af:
            raise SpecError(f"{at}: airflow: unknown keys {bad_af}")
        _check_models(at, merged.get("models"))
        for dep in upstreams(task_name, merged):
            if dep not in tasks:
                raise SpecError(f"{at}: depends on unknown task {dep!r}")
    order(spec, where)
    return spec


def _check_models(at: str, models: Any) -> None:
    if models is None:
        return
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise SpecError(f"{at}: models must be a list of strings")
    for i, item in enumerate(models):
        if not (item.startswith((MODEL_URI, TASK_REF)) or "{{" in item):
            raise SpecError(
                f"{at}: models[{i}] {item!r} is none of {MODEL_URI}<name>/<version>, "
                f"{TASK_REF}<task> (the versions that task registered) or a template"
            )


def _model_refs(models: list[str]) -> str | list[str]:
    """The operator's ``models``: ``task:X`` becomes the XCom of versions X registered."""
    refs = [
        f"{{{{ ti.xcom_pull(task_ids='{m[len(TASK_REF) :]}', key='model_versions') }}}}"
        if m.startswith(TASK_REF)
        else m
        for m in models
    ]
    # one template alone renders to the list itself (render_template_as_native_obj)
    return refs[0] if len(refs) == 1 and "{{" in refs[0] else refs


def _check_stop_task(
    at: str, task: dict[str, Any], tasks: dict[str, Any], defaults: dict[str, Any]
) -> None:
    bad = sorted(set(task) - STOP_TASK_KEYS)
    if bad:
        raise SpecError(f"{at}: a stop task takes only {sorted(STOP_TASK_KEYS)}; not {bad}")
    target = task["stop"]
    if target not in tasks or "stop" in (tasks[target] or {}):
        raise SpecError(f"{at}: stop names unknown task {target!r}")
    if {**defaults, **tasks[target]}.get("mode") != "service":
        raise SpecError(f"{at}: stop names {target!r}, which is not a mode: service task")
    bad_af = sorted(set(task.get("airflow") or {}) - AIRFLOW_KEYS)
    if bad_af:
        raise SpecError(f"{at}: airflow: unknown keys {bad_af}")
    for dep in upstreams("", task):
        if dep not in tasks:
            raise SpecError(f"{at}: depends on unknown task {dep!r}")


def upstreams(name: str, task: dict[str, Any]) -> list[str]:
    deps: list[str] = [str(task["stop"])] if task.get("stop") else []
    for item in task.get("inputs") or []:
        artifact = str((item or {}).get("artifact", ""))
        if artifact.startswith(TASK_REF):
            deps.append(artifact[len(TASK_REF) :].split("/", 1)[0])
    deps.extend(m[len(TASK_REF) :] for m in task.get("models") or [] if m.startswith(TASK_REF))
    deps.extend(str(d) for d in task.get("depends_on") or [])
    return list(dict.fromkeys(d for d in deps if d != name))


def order(spec: dict[str, Any], where: str = "spec") -> list[str]:
    """Tasks in topological order (ties kept in spec order); a cycle is a SpecError."""
    defaults = spec.get("defaults") or {}
    deps = {n: upstreams(n, _merged(defaults, t)) for n, t in spec["tasks"].items()}
    done: list[str] = []
    pending = list(deps)
    while pending:
        ready = [n for n in pending if all(d in done for d in deps[n])]
        if not ready:
            raise SpecError(f"{where}: tasks form a cycle: {' -> '.join(pending)}")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def _merged(defaults: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """A task with the spec's defaults; a stop task runs nothing, so it takes none."""
    return dict(task) if "stop" in task else {**defaults, **task}


def _operator_kwargs(name: str, task: dict[str, Any], connection: str | None) -> dict[str, Any]:
    mapping = {
        "command": "command",
        "image": "image",
        "env": "env",
        "secret_env": "secret_env",
        "code": "code",
        "data": "data",
        "inputs": "inputs",
        "outputs": "outputs",
        "params": "task_params",
        "resources": "task_resources",
        "timeout_s": "task_timeout_s",
        "retries": "task_retries",
        "priority": "task_priority",
    }
    kwargs: dict[str, Any] = {"task_id": name}
    if task.get("stop"):
        kwargs["service_task_id"] = task["stop"]
        mapping = {}
    for key, arg in mapping.items():
        if task.get(key) not in (None, [], {}):
            kwargs[arg] = task[key]
    if task.get("models") and not task.get("stop"):
        kwargs["models"] = _model_refs(task["models"])
    if connection:
        kwargs["tracectl_conn_id"] = connection
    return kwargs


def _operator_of(task: dict[str, Any]) -> str:
    if task.get("stop"):
        return "TracectlStopServiceOperator"
    return "TracectlServiceOperator" if task.get("mode") == "service" else "TracectlTaskOperator"


def context(spec: dict[str, Any]) -> dict[str, Any]:
    defaults = spec.get("defaults") or {}
    tasks = []
    for name in order(spec):
        task = _merged(defaults, spec["tasks"][name])
        airflow = dict(task.get("airflow") or {})
        kwargs = _operator_kwargs(name, task, spec.get("connection"))
        timedeltas = {}
        for key in ("retry_delay_s", "execution_timeout_s"):
            if key in airflow:
                timedeltas[key.removesuffix("_s")] = float(airflow.pop(key))
        kwargs.update(airflow)
        tasks.append(
            {
                "name": name,
                "var": name.replace("-", "_"),
                "operator": _operator_of(task),
                "teardown_of": str(task["stop"]).replace("-", "_") if task.get("stop") else None,
                "kwargs": [(k, py(v)) for k, v in kwargs.items()],
                "timedeltas": sorted(timedeltas.items()),
                "upstreams": [d.replace("-", "_") for d in upstreams(name, task)],
            }
        )
    params = []
    for key, param in (spec.get("params") or {}).items():
        schema = {k: v for k, v in param.items() if k != "default"}
        params.append((key, py(param["default"]), [(k, py(v)) for k, v in schema.items()]))
    start = str(spec.get("start_date") or "2026-01-01")
    year, month, day = (int(p) for p in start.split("-"))
    return {
        "pipeline": spec["pipeline"],
        "description": py(str(spec.get("description") or spec["pipeline"])),
        "schedule": py(spec.get("schedule")),
        "start_date": f"datetime({year}, {month}, {day})",
        "tags": py(list(spec.get("tags") or ["tracectl"])),
        "max_active_runs": int(spec.get("max_active_runs") or 4),
        "params": params,
        "tasks": tasks,
        "operators": sorted({t["operator"] for t in tasks}),
        "uses_timedelta": any(t["timedeltas"] for t in tasks),
    }


def render(spec_path: str | Path, template_dir: str | Path | None = None) -> str:
    """The DAG file (Python source) for the pipeline spec at SPEC_PATH."""
    import jinja2

    spec = load(spec_path)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir or default_template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["indent_py"] = indent
    source = env.get_template(TEMPLATE_NAME).render(spec_file=Path(spec_path).name, **context(spec))
    compile(source, f"<rendered {spec_path}>", "exec")  # never hand out a broken DAG file
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controller.airflow.render",
        description="Render a tracectl pipeline spec to a DAG.",
    )
    parser.add_argument("spec", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        source = render(args.spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(source)
    else:
        sys.stdout.write(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
