"""A tiny Kustomize expander for tests: ``resources:`` only, no kustomize binary needed.

Reads ``kustomization.yaml`` (or ``.yml`` / ``Kustomization``), follows every entry of
``resources:`` (a file: all its YAML documents; a folder: its own kustomization, recursively),
and applies ``namespace:`` the way kustomize does (sets it on every namespaced object).
Anything else that changes objects (generators, patches, transformers, ...) is refused, so an
expansion here is exactly what ``kubectl apply -k`` would send; remote resources too.

    python -m tests.deploy.kustomize deploy/k8s/base        # prints the expanded stream
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ALLOWED_KEYS = {"apiVersion", "kind", "resources", "namespace", "metadata"}

# Kinds without a namespace (the ones a deploy bundle can hold; extend when one is used).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "RuntimeClass",
}


class KustomizeError(ValueError):
    pass


def kustomization_file(folder: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        path = folder / name
        if path.is_file():
            return path
    raise KustomizeError(f"{folder}: no kustomization.yaml")


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    docs = []
    with path.open(encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                raise KustomizeError(f"{path}: a document is not a Kubernetes object: {doc!r:.80}")
            docs.append(doc)
    return docs


def expand(folder: str | Path, _seen: frozenset[Path] = frozenset()) -> list[dict[str, Any]]:
    """The objects of the kustomization in FOLDER, in the order kustomize lists resources."""
    root = Path(folder).resolve()
    if root in _seen:
        raise KustomizeError(f"{root}: kustomization cycle")
    path = kustomization_file(root)
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unsupported = sorted(set(spec) - ALLOWED_KEYS)
    if unsupported:
        raise KustomizeError(f"{path}: only resources/namespace are supported, not {unsupported}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        if "://" in entry or entry.startswith("github.com/"):
            raise KustomizeError(f"{path}: remote resource {entry!r} is not supported")
        target = (root / entry).resolve()
        if target.is_dir():
            objects.extend(expand(target, _seen | {root}))
        elif target.is_file():
            objects.extend(load_documents(target))
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    namespace = spec.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace
    _check_unique(objects, path)
    return objects


def _check_unique(objects: Iterable[Mapping[str, Any]], path: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        key = (
            obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "",
            obj["kind"],
            meta.get("namespace", ""),
            meta.get("name", ""),
        )
        if key in seen:
            raise KustomizeError(f"{path}: {key} is defined twice")
        seen.add(key)


def rename_namespaces(
    objects: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Copies of OBJECTS with namespaces renamed (objects, Namespace names, RBAC subjects)."""
    renamed = []
    for original in objects:
        obj = copy.deepcopy(dict(original))
        meta = obj.setdefault("metadata", {})
        if obj["kind"] == "Namespace":
            meta["name"] = mapping.get(meta["name"], meta["name"])
        elif "namespace" in meta:
            meta["namespace"] = mapping.get(meta["namespace"], meta["namespace"])
        for subject in obj.get("subjects") or []:
            if "namespace" in subject:
                subject["namespace"] = mapping.get(subject["namespace"], subject["namespace"])
        renamed.append(obj)
    return renamed


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.deploy.kustomize FOLDER", file=sys.stderr)
        return 2
    yaml.safe_dump_all(expand(argv[0]), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
