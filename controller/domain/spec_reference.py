"""The task spec reference in docs/user-guide.md, generated from the pydantic models.

    python -m controller.domain.spec_reference            # print the reference (Markdown)
    python -m controller.domain.spec_reference --write    # rewrite it in docs/user-guide.md

Each field's type, default and limits come from the model; its text from the model's
`description`, else from HELP below (prose the model does not carry yet).
"""

from __future__ import annotations

import re
import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from controller.domain import spec

START, END = "<!-- spec-reference:start -->", "<!-- spec-reference:end -->"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
MODELS: list[type[BaseModel]] = [
    spec.TaskSpec,
    spec.CodeRef,
    spec.DataRef,
    spec.InputRef,
    spec.Resources,
    spec.VolumeClaim,
]
HELP = {
    "TaskSpec.image": "container image (Kubernetes executor); the local executor runs without one",
    "TaskSpec.command": "argv of the task, never a shell string: `[python, train.py]`",
    "TaskSpec.env": "environment variables for the command",
    "TaskSpec.code": "the git repository checked out as the working directory",
    "TaskSpec.data": "DVC-tracked paths of that repository, pulled before the command",
    "TaskSpec.inputs": "artifacts placed in the working directory before the command",
    "TaskSpec.outputs": "files (relative paths) hashed and archived after a successful exit",
    "TaskSpec.params": "free-form JSON, handed to the command as a file and a variable",
    "TaskSpec.resources": "GPUs, CPU, memory and volumes, admitted all together",
    "TaskSpec.mode": "`job` runs to the end; `service` listens on `PORT` until its run "
    "is closed; `external` is a call to another system (Kubernetes executor)",
    "TaskSpec.timeout_s": "seconds before the command is stopped (SIGTERM, then SIGKILL)",
    "TaskSpec.retries": "further attempts after a failure",
    "TaskSpec.priority": "higher is admitted first among waiting tasks",
    "EnvironmentSpec.uv_lock": "a uv lock file (its pyproject.toml beside it): exactly its "
    "packages",
    "EnvironmentSpec.requirements": "a requirements file, installed with `uv pip install -r`",
    "EnvironmentSpec.pyproject": "the dependencies a pyproject.toml lists",
    "EnvironmentSpec.image": "a container image (Kubernetes executor only)",
    "CodeRef.ref": "branch, tag or commit; resolved to a commit at submit",
    "DataRef.paths": "paths with a `.dvc` file in the repository",
    "InputRef.path": "where the artifact is placed, relative to the working directory",
    "Resources.cpu": "CPU cores (a limit for the local executor, a request on Kubernetes)",
    "Resources.gpu": "GPUs, leased for the whole attempt",
    "Resources.gpu_flavor": "a GPU model from the inventory, e.g. `a100`",
    "Resources.volumes": "volume claims, leased read-write (one holder) or read-only (many)",
    "VolumeClaim.claim": "the claim's name in the inventory",
    "VolumeClaim.mode": "`rw` (exclusive) or `ro` (shared)",
    "VolumeClaim.mount_path": "where a Kubernetes pod mounts it",
}


def type_name(annotation: Any) -> str:
    """`list[InputRef]`, `str | None`, `job | service` for an annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(str(m.value) for m in annotation)
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation)).replace("|", "\\|")


def default_of(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_defaults=True)
    value = value.value if isinstance(value, Enum) else value
    return (
        f"`{value!r}`"
        if value not in (None, [], {})
        else ("`null`" if value is None else f"`{value!r}`")
    )


def limits(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for name in ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern"):
            value = getattr(item, name, None)
            if value is not None:
                words.append(f"{name} {value}")
    return ", ".join(words).replace("|", "\\|")


def model_table(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [
        f"### `{model.__name__}`",
        "",
        doc,
        "",
        "| field | type | default | limits | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        text = field.description or HELP.get(f"{model.__name__}.{name}", "")
        text = re.sub(r"\s+", " ", text).replace("|", "\\|")
        lines.append(
            f"| `{name}` | {type_name(field.annotation)} | {default_of(field)} | "
            f"{limits(field)} | {text} |"
        )
    return "\n".join(lines)


def render() -> str:
    """The reference, between its markers."""
    header = (
        "Generated from `controller/domain/spec.py` by "
        "`python -m controller.domain.spec_reference --write`; a test fails when it "
        "is stale."
    )
    body = "\n\n".join(model_table(m) for m in MODELS)
    return f"{START}\n{header}\n\n{body}\n{END}"


def current(text: str) -> str:
    """The reference section as it stands in TEXT."""
    return text[text.index(START) : text.index(END) + len(END)]


def main(argv: list[str]) -> int:
    if "--write" in argv:
        text = GUIDE.read_text()
        GUIDE.write_text(text.replace(current(text), render()))
        print(f"wrote the task spec reference in {GUIDE}")
        return 0
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
