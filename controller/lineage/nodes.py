"""Lineage graph node ids: one type, one format (`<kind>:<key>`) and one parse."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class NodeKind(StrEnum):
    DATA = "data"  # data:<path>@<md5>
    COMMIT = "commit"  # commit:<sha>
    TASK = "task"  # task:<task id>
    ARTIFACT = "artifact"  # artifact:<sha256>
    MODEL = "model"  # model:<name>/<version>
    SERVICE = "service"  # service:<task id>
    ENV = "env"  # env:<environment key>: the software environment a task ran in


# The one rule for a node id's text, for schemas that state it (the API's `node` parameters).
PATTERN = "^(" + "|".join(kind.value for kind in NodeKind) + "):.+$"


@dataclass(frozen=True)
class NodeId:
    kind: NodeKind
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """The node id TEXT names; ValueError when it names no kind or no key."""
        kind, _, key = text.partition(":")
        if kind not in NodeKind.__members__.values() or not key:
            raise ValueError(f"{text!r} is not a node id")
        return cls(NodeKind(kind), key)


def task(task_id: str) -> str:
    return str(NodeId(NodeKind.TASK, task_id))


def artifact(sha256: str) -> str:
    return str(NodeId(NodeKind.ARTIFACT, sha256))


def commit(sha: str) -> str:
    return str(NodeId(NodeKind.COMMIT, sha))


def service(task_id: str) -> str:
    return str(NodeId(NodeKind.SERVICE, task_id))


def env(key: str) -> str:
    return str(NodeId(NodeKind.ENV, key))


def data(path: str, md5: str) -> str:
    return str(NodeId(NodeKind.DATA, f"{path}@{md5}"))


def model(name: str, version: str | int) -> str:
    return str(NodeId(NodeKind.MODEL, f"{name}/{version}"))


def model_of_uri(uri: str) -> str:
    """The node of a registry URI `models:/<name>/<version>`."""
    name, _, version = uri.removeprefix("models:/").rpartition("/")
    return model(name, version)


def keys_of(kind: NodeKind, ids: set[str] | list[str]) -> list[str]:
    """The keys of the KIND nodes among IDS (e.g. the task ids of `task:` nodes)."""
    prefix = f"{kind}:"
    return [i.removeprefix(prefix) for i in ids if i.startswith(prefix)]
