"""A pipeline spec (templates/pipeline/*.yaml) made into the task bodies `tracectl run` submits.

The file is the one `tracectl render` turns into an Airflow DAG: its `params` defaults, with
`--param key=value` over them and checked against each param's JSON schema, fill the
`{{ params.NAME }}` templates; any other template (`ti.xcom_pull`, ...) only Airflow can fill.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from controller.airflow.render import SpecError, load, order, upstreams

TEMPLATE = re.compile(r"{{\s*(.*?)\s*}}")
PARAM = re.compile(r"^params\.([A-Za-z][A-Za-z0-9_]*)$")
OPERATOR_ONLY = ("depends_on", "airflow", "stop")


class PipelineTask(BaseModel):
    """One task of the pipeline as `tracectl run` handles it."""

    name: str
    spec: dict[str, Any] = Field(default_factory=dict, description="the TaskSpec to submit")
    after: list[str] = Field(default_factory=list, description="tasks that must end first")
    stop: str | None = Field(default=None, description="the service task this one stops")


class Pipeline(BaseModel):
    name: str
    params: dict[str, Any]
    tasks: list[PipelineTask]


def parse_params(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs; each value is read as YAML (80 is a number, [1, 2] a list)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--param {item!r}: write it as key=value, e.g. --param n_estimators=80"
            )
        try:
            params[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            params[key.strip()] = raw
    return params


def resolve_params(declared: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise SpecError(
            f"--param {unknown[0]}: the pipeline declares no such param "
            f"(it has: {', '.join(declared) or 'none'})"
        )
    values = {k: overrides.get(k, p["default"]) for k, p in declared.items()}
    for key in overrides:
        problem = check_param(values[key], declared[key])
        if problem:
            raise SpecError(f"--param {key}={values[key]!r}: {problem}")
    return values


TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def check_param(value: Any, schema: dict[str, Any]) -> str | None:
    """What is wrong with VALUE under the JSON-schema keywords params use (None: nothing)."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or list(TYPES)
    if not any(
        isinstance(value, TYPES[k]) and not (k != "boolean" and isinstance(value, bool))
        for k in kinds
        if k in TYPES
    ):
        return f"must be of type {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {schema['enum']}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        for word, bad in (
            ("minimum", value < schema.get("minimum", value)),
            ("maximum", value > schema.get("maximum", value)),
            ("exclusiveMinimum", value <= schema.get("exclusiveMinimum", value - 1)),
            ("exclusiveMaximum", value >= schema.get("exclusiveMaximum", value + 1)),
        ):
            if bad:
                return f"breaks {word} {schema[word]}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
            return "has the wrong length"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"must match {schema['pattern']}"
    return None


def fill(value: Any, params: dict[str, Any], at: str) -> Any:
    """VALUE with its `{{ params.X }}` templates filled; a lone template keeps X's type."""
    if isinstance(value, dict):
        return {k: fill(v, params, f"{at}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, params, f"{at}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "{{" not in value:
        return value
    for expression in TEMPLATE.findall(value):
        match = PARAM.match(expression)
        if match is None or match[1] not in params:
            raise SpecError(
                f"{at}: the template {{{{ {expression} }}}} is filled only by "
                "Airflow; `tracectl run` fills {{ params.NAME }} of declared params"
            )
    whole = TEMPLATE.fullmatch(value.strip())
    if whole:
        return params[whole[1].removeprefix("params.")]
    return TEMPLATE.sub(lambda m: str(params[m[1].removeprefix("params.")]), value)


def _task(name: str, merged: dict[str, Any], params: dict[str, Any]) -> PipelineTask:
    if merged.get("stop"):
        return PipelineTask(name=name, after=upstreams(name, merged), stop=str(merged["stop"]))
    spec = {k: v for k, v in merged.items() if k not in OPERATOR_ONLY}
    for model in spec.get("models") or []:
        if str(model).startswith("task:"):
            raise SpecError(
                f"tasks.{name}.models: {model!r} (the versions a task registered) "
                "is resolved only by Airflow; name models:/<name>/<version>"
            )
    return PipelineTask(
        name=name, spec=fill(spec, params, f"tasks.{name}"), after=upstreams(name, merged)
    )


def load_pipeline(path: Path, overrides: dict[str, Any]) -> Pipeline:
    """The pipeline at PATH with params filled, tasks in dependency order."""
    try:
        spec = load(path)
    except SpecError:
        if _is_task_spec(path):
            raise SpecError(
                f"{path} is one task's spec (it has 'command'), not a pipeline: submit it with "
                f"`tracectl submit {path} --name NAME`"
            ) from None
        raise
    params = resolve_params(spec.get("params") or {}, overrides)
    defaults = spec.get("defaults") or {}
    tasks = []
    for name in order(spec, str(path)):
        task = spec["tasks"][name]
        merged = dict(task) if "stop" in task else {**defaults, **task}
        tasks.append(_task(name, merged, params))
    for task in tasks:
        _absolute_repo(task.spec, path.parent)
    return Pipeline(name=spec["pipeline"], params=params, tasks=tasks)


def _is_task_spec(path: Path) -> bool:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and "command" in doc and "tasks" not in doc


REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


def _absolute_repo(spec: dict[str, Any], base: Path) -> None:
    """A relative local `code.repo` (`"."`) is the folder it names next to the pipeline
    file: the controller would otherwise read it from its own working directory."""
    code = spec.get("code")
    if not isinstance(code, dict):
        return
    repo = code.get("repo")
    if not isinstance(repo, str) or not repo or REMOTE.match(repo) or Path(repo).is_absolute():
        return
    local = (base / repo).resolve()
    if local.is_dir():
        spec["code"] = {**code, "repo": str(local)}
