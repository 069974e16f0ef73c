"""TaskSpec: what a client asks the controller to run. Unknown fields are rejected."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

JsonValue = Any
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_TASK_REF = re.compile(r"^task:[A-Za-z0-9][A-Za-z0-9_.-]*/.+$")
# MLflow's registry URI of one version; names may hold spaces but no '/'.
MODEL_URI = re.compile(r"^models:/(?P<name>[^/\x00]+)/(?P<version>[1-9][0-9]*)$")

MAX_ARGV_ITEMS = 256
PORT = "^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
MAX_ARG_CHARS = 8192
MAX_PARAMS_BYTES = 256 * 1024
MAX_ENV_VALUE_CHARS = 32 * 1024


def json_number(value: Any) -> Any:
    """A number as JSON has it: "2" and true are not numbers (pydantic's lax mode takes them)."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number, not a string or a boolean")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def relative_path(value: str) -> str:
    """A path confined to its workspace: relative, normalized, no '..'."""
    if not value or "\x00" in value:
        raise ValueError("path must be a non-empty string without NUL bytes")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError(f"path {value!r} must be relative to the workspace")
    if any(part == ".." for part in path.parts):
        raise ValueError(f"path {value!r} must not contain '..'")
    normalized = str(path)
    if normalized == ".":
        raise ValueError("path must name a file or folder inside the workspace")
    return normalized


# relative_path's rules as a pattern: not absolute, no '..' part, not '.' alone, no NUL
REL_PATH = r"^(?!/)(?!(.*/)?\.\.(/|$))(?!(\.?/)*\.?$)[^\u0000]+$"
RelPath = Annotated[
    str, Field(min_length=1, max_length=1024, json_schema_extra={"pattern": REL_PATH})
]


class TaskMode(StrEnum):
    JOB = "job"
    SERVICE = "service"
    EXTERNAL = "external"


class CodeRef(Strict):
    """Source code of a task: a git repository (URL or local path) at a ref."""

    repo: str = Field(min_length=1, max_length=2048, description="git URL or absolute local path")
    ref: str = Field(default="HEAD", min_length=1, max_length=256)
    commit: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{40}$", description="set by the controller"
    )


class DataRef(Strict):
    """DVC-tracked inputs of a task, read from the code repository at `rev`."""

    paths: list[RelPath] = Field(min_length=1, max_length=256)
    rev: str | None = Field(default=None, max_length=256, description="defaults to the code ref")

    _check_paths = field_validator("paths")(
        classmethod(lambda cls, v: [relative_path(p) for p in v])
    )


class VolumeClaim(Strict):
    claim: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=253)
    mode: str = Field(default="rw", pattern=r"^(rw|ro)$")
    mount_path: str = Field(default="/data", min_length=1, max_length=1024)


class Resources(Strict):
    cpu: float | None = Field(default=None, gt=0, le=512)
    memory: str | None = Field(
        default=None,
        description="bytes with a unit, e.g. 512Mi, 2Gi",
        json_schema_extra={"pattern": _MEMORY.pattern},
    )
    gpu: int = Field(default=0, ge=0, le=64)
    gpu_flavor: str | None = Field(default=None, max_length=128)
    volumes: list[VolumeClaim] = Field(default_factory=list, max_length=32)

    _numbers = field_validator("cpu", "gpu", mode="before")(
        classmethod(lambda cls, v: json_number(v))
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"memory {value!r} must look like 512Mi, 2Gi or 1073741824")
        return value

    def memory_bytes(self) -> int | None:
        if self.memory is None:
            return None
        units = {
            "K": 10**3,
            "M": 10**6,
            "G": 10**9,
            "T": 10**12,
            "Ki": 2**10,
            "Mi": 2**20,
            "Gi": 2**30,
            "Ti": 2**40,
        }
        match = re.match(r"^([0-9.]+)([A-Za-z]*)$", self.memory)
        assert match is not None
        return int(float(match.group(1)) * units.get(match.group(2), 1))


class InputRef(Strict):
    """An artifact placed into the workspace before the command runs.

    `artifact` is `sha256:<hex>` (any stored artifact) or `task:<name>/<output path>`
    (an output of an earlier task of the same run; the task waits for it).
    """

    artifact: str = Field(
        max_length=2048, json_schema_extra={"pattern": f"({_SHA256.pattern})|({_TASK_REF.pattern})"}
    )
    path: RelPath

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, value: str) -> str:
        if not (_SHA256.match(value) or _TASK_REF.match(value)):
            raise ValueError(
                f"artifact {value!r} must be 'sha256:<64 hex>' or 'task:<task name>/<path>'"
            )
        return value

    _check_path = field_validator("path")(classmethod(lambda cls, v: relative_path(v)))

    @property
    def upstream_task(self) -> str | None:
        if not self.artifact.startswith("task:"):
            return None
        return self.artifact[len("task:") :].split("/", 1)[0]

    @property
    def upstream_output(self) -> str:
        return self.artifact[len("task:") :].split("/", 1)[1]


class EnvironmentSpec(Strict):
    """Where a task's Python packages come from (docs/environments.md).

    At most one source: `uv_lock`, `requirements` or `pyproject` (paths in the task's repo at
    the resolved commit), or `image` (the Kubernetes executor's container image). With no
    source the repo is searched for uv.lock, then requirements.txt; with none, the task gets a
    bare interpreter of `python`.
    """

    python: str | None = Field(
        default=None,
        pattern=r"^3\.[0-9]{1,2}(\.[0-9]{1,2})?$",
        description="Python version, e.g. 3.11 (default: the controller's)",
    )
    uv_lock: RelPath | None = None
    requirements: RelPath | None = None
    pyproject: RelPath | None = None
    image: str | None = Field(default=None, max_length=512)

    _check_paths = field_validator("uv_lock", "requirements", "pyproject")(
        classmethod(lambda cls, v: None if v is None else relative_path(v))
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvironmentSpec:
        given = [
            name
            for name in ("uv_lock", "requirements", "pyproject", "image")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give at most one environment source, not {given}")
        return self

    def source(self) -> tuple[str, str] | None:
        """(kind, path) of the declared file, or None."""
        for kind in ("uv_lock", "requirements", "pyproject"):
            if (path := getattr(self, kind)) is not None:
                return kind, str(path)
        return None


def port_of(env: Mapping[str, str]) -> int | None:
    """The port in env PORT (a service listens on it); None when unset or not a port."""
    raw = env.get("PORT", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 65536 else None


ARG: dict[str, JsonValue] = {
    "type": "string",
    "maxLength": MAX_ARG_CHARS,
    "pattern": "^[^\\u0000]*$",
}


class TaskSpec(Strict):
    """Everything needed to run one task and to reproduce it later."""

    image: str | None = Field(default=None, max_length=512)
    command: list[str] = Field(
        min_length=1,
        max_length=MAX_ARGV_ITEMS,
        # the rules of _command, stated in the schema too (OpenAPI 3.1 is JSON Schema 2020-12)
        json_schema_extra={"prefixItems": [{**ARG, "minLength": 1}], "items": ARG},
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        max_length=256,
        json_schema_extra={
            # _env's rules, stated in the schema too
            "propertyNames": {"pattern": "^(?!TRACECTL_)[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_ENV_VALUE_CHARS,
                "pattern": "^[^\\u0000]*$",
            },
            "properties": {"PORT": {"type": "string", "pattern": PORT}},
        },
    )
    secret_env: list[str] = Field(
        default_factory=list, description="env keys whose values are secret: never stored"
    )
    code: CodeRef | None = None
    data: DataRef | None = None
    inputs: list[InputRef] = Field(default_factory=list, max_length=256)
    outputs: list[RelPath] = Field(default_factory=list, max_length=256)
    models: list[str] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"items": {"type": "string", "pattern": MODEL_URI.pattern}},
        description="registered model versions the task reads, as 'models:/<name>/<version>': "
        "recorded as lineage edges model -> task and given to it in TRACECTL_MODELS",
    )
    params: dict[str, JsonValue] = Field(default_factory=dict)
    environment: EnvironmentSpec | None = Field(
        default=None,
        description="the task's Python environment; detected in the repo when "
        "absent (uv.lock, then requirements.txt, else a bare interpreter)",
    )
    resources: Resources = Field(default_factory=Resources)
    mode: TaskMode = TaskMode.JOB
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    retries: int = Field(default=0, ge=0, le=20)
    priority: int = Field(default=0, ge=-1000, le=1000)
    cache: StrictBool = Field(
        default=False,
        description="reuse the outputs of an earlier task with the same inputs, code, "
        "params and image instead of running (recorded as 'cached from run R')",
    )
    after: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]] = Field(
        default_factory=list,
        max_length=256,
        description="tasks of the same run (by name, created before this one or in the same "
        "request) that must succeed first, a service task only be running; for order without "
        "data (a `task:` input waits by itself). One that fails cancels this task",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="tags of this task, not part of its cache key; the Airflow operator sets "
        "airflow_task_id, airflow_try_number and airflow_map_index (the task instance that "
        "submitted it: the parent of its OpenLineage runs)",
    )

    _numbers = field_validator("timeout_s", "retries", "priority", mode="before")(
        classmethod(lambda cls, v: json_number(v))
    )

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        for arg in value:
            if len(arg) > MAX_ARG_CHARS or "\x00" in arg:
                raise ValueError("each argument must be under 8192 characters, without NUL")
        if not value[0]:
            raise ValueError("the program (first argument) must not be empty")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _ENV_KEY.match(key):
                raise ValueError(f"env key {key!r} is not a valid variable name")
            if key.startswith("TRACECTL_"):
                raise ValueError(f"env key {key!r}: TRACECTL_* variables are set by the controller")
            if "\x00" in val:
                raise ValueError(f"env value of {key!r} contains a NUL byte")
            if len(val) > MAX_ENV_VALUE_CHARS:
                raise ValueError(f"env value of {key!r} is over {MAX_ENV_VALUE_CHARS} characters")
        if "PORT" in value and port_of(value) is None:
            raise ValueError(
                f"env PORT={value['PORT']!r} must be a TCP port number (1-65535): "
                "the port a service listens on"
            )
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        for uri in value:
            if not MODEL_URI.match(uri):
                raise ValueError(f"model {uri!r} must be 'models:/<name>/<version number>'")
        return value

    _check_outputs = field_validator("outputs")(
        classmethod(lambda cls, v: [relative_path(p) for p in v])
    )

    @field_validator("params")
    @classmethod
    def _params_size(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        import json

        size = len(json.dumps(value, default=str))
        if size > MAX_PARAMS_BYTES:
            raise ValueError(f"params take {size} bytes as JSON; the limit is {MAX_PARAMS_BYTES}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> TaskSpec:
        unknown = [k for k in self.secret_env if k not in self.env]
        if unknown:
            raise ValueError(f"secret_env names keys that are not in env: {unknown}")
        if self.data is not None and self.code is None:
            raise ValueError("data needs code: DVC paths are read from the code repository")
        env = self.environment
        if env is not None and env.source() is not None and self.code is None:
            raise ValueError("environment files need code: they are read from the repository")
        if env is not None and env.image and self.image and env.image != self.image:
            raise ValueError("image and environment.image name different images: give one")
        return self

    def public_env(self) -> dict[str, str]:
        """Env as it may be stored and shown: secret values replaced."""
        return {k: ("***" if k in self.secret_env else v) for k, v in self.env.items()}
