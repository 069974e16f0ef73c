"""Preflight: before a task is admitted, check that it can be reproduced later.

Each check yields findings with a code, the field it concerns, what is wrong and the fix.
A configurable policy (TRACECTL_PREFLIGHT, e.g. "code.dirty=refuse,image.mutable_tag=warn")
decides per code whether the submission is refused (HTTP 422, nothing written) or accepted
with the finding recorded in the task's lineage.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import git
import yaml

from controller.core import image_pins
from controller.domain.spec import TaskSpec
from controller.runtime import code as code_refs

DEFAULT_POLICY = {
    "code.unpushed": "warn",
    "code.dirty": "warn",
    "data.not_in_remote": "refuse",
    "image.mutable_tag": "warn",
    "params.not_serializable": "refuse",
    "environment.unpinned": "warn",
}


@dataclass(frozen=True)
class Finding:
    code: str
    loc: list[str | int]
    message: str
    fix: str
    action: str = "warn"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_policy(text: str) -> dict[str, str]:
    policy = dict(DEFAULT_POLICY)
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, action = item.partition("=")
        if key not in DEFAULT_POLICY or action not in ("warn", "refuse", "ignore"):
            raise ValueError(
                f"bad preflight policy item {item!r}: use <check>=warn|refuse|ignore "
                f"with a check among {sorted(DEFAULT_POLICY)}"
            )
        policy[key] = action
    return policy


def _params_finding(spec: TaskSpec) -> Finding | None:
    def finite(value: Any) -> bool:
        if isinstance(value, float):
            return math.isfinite(value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and finite(v) for k, v in value.items())
        if isinstance(value, list):
            return all(finite(v) for v in value)
        return value is None or isinstance(value, str | int | bool)

    try:
        json.dumps(spec.params, allow_nan=False)
        ok = finite(spec.params)
    except (TypeError, ValueError):
        ok = False
    if ok:
        return None
    return Finding(
        "params.not_serializable",
        ["spec", "params"],
        "params hold values that are not plain JSON (NaN, Infinity or non-string keys)",
        "use finite numbers, strings, lists and objects only",
    )


def _image_finding(spec: TaskSpec, resolved: dict[str, Any]) -> Finding | None:
    field = image_pins.image_field(spec)
    if field is None or "@sha256:" in field[1]:
        return None
    loc, image = field
    pinned = (resolved.get("image") or {}).get("pinned")
    runs = f"; this task runs {pinned}, the digest it names now" if pinned else ""
    return Finding(
        "image.mutable_tag",
        loc,
        f"image {image!r} is referenced by a tag, which can move{runs}",
        "pin it by digest: name@sha256:<digest> (skopeo inspect docker://<image>)",
    )


def _environment_finding(resolved: dict[str, Any]) -> Finding | None:
    env = resolved.get("environment") or {}
    loose = env.get("unpinned") or []
    if not loose:
        return None
    field = "environment" if env.get("detected") else "requirements"
    return Finding(
        "environment.unpinned",
        ["spec", "environment", field],
        f"{env.get('path')} does not pin {', '.join(loose)}: a later build may "
        "install other versions",
        "pin each with ==, or lock them: uv pip compile requirements.in "
        "-o requirements.txt (or use uv lock and a uv.lock)",
    )


def _code_findings(spec: TaskSpec, commit: str, cache: Path) -> list[Finding]:
    assert spec.code is not None
    repo, is_source = code_refs.open_repo(spec.code.repo, cache)
    if not is_source:
        return []  # fetched from its remote: pushed by definition, no working tree
    findings = []
    remote_refs = [r for remote in repo.remotes for r in remote.refs]
    contained = False
    for ref in remote_refs:
        try:
            if repo.is_ancestor(repo.commit(commit), ref.commit):
                contained = True
                break
        except git.GitCommandError:
            continue
    if not contained:
        where = "has no remote" if not repo.remotes else "is on no remote branch"
        findings.append(
            Finding(
                "code.unpushed",
                ["spec", "code", "ref"],
                f"commit {commit[:12]} of {spec.code.repo} {where}: nobody else can fetch it",
                "git push the branch that holds it (and use the remote URL as code.repo)",
            )
        )
    if not repo.bare and repo.is_dirty(untracked_files=False):
        findings.append(
            Finding(
                "code.dirty",
                ["spec", "code", "repo"],
                f"{spec.code.repo} has uncommitted changes; the task runs commit {commit[:12]}, "
                "not your working tree",
                "commit (or stash) the changes and submit again",
            )
        )
    return findings


def _dvc_remote(repo: str, commit: str, cache: Path) -> tuple[str | None, dict[str, Any]]:
    raw = code_refs.read_file_at(repo, commit, ".dvc/config", cache)
    if raw is None:
        return None, {}
    import configparser

    parser = configparser.ConfigParser()
    parser.read_string(raw.decode())
    default = parser.get("core", "remote", fallback=None)
    if not default:
        return None, {}
    for name in parser.sections():
        # DVC writes the section quoted: ['remote "storage"']
        if name.strip().strip("'") == f'remote "{default}"':
            return parser.get(name, "url", fallback=None), dict(parser.items(name))
    return None, {}


def _object_present(url: str, options: dict[str, Any], md5: str, base: Path) -> bool:
    key = f"files/md5/{md5[:2]}/{md5[2:]}"
    if "://" not in url:
        root = Path(url) if Path(url).is_absolute() else base / ".dvc" / url
        return (root / key).exists()
    if url.startswith("s3://"):
        import s3fs

        fs = s3fs.S3FileSystem(
            client_kwargs={"endpoint_url": options.get("endpointurl")}
            if options.get("endpointurl")
            else None
        )
        return bool(fs.exists(f"{url.removeprefix('s3://').rstrip('/')}/{key}"))
    return True  # other remote kinds are not checked here; dvc pull reports them at run time


def _data_findings(spec: TaskSpec, data: list[dict[str, Any]], cache: Path) -> list[Finding]:
    assert spec.code is not None
    findings = []
    for index, item in enumerate(data):
        url, options = _dvc_remote(spec.code.repo, item["rev"], cache)
        base = Path(spec.code.repo) if "://" not in spec.code.repo else cache
        loc: list[str | int] = ["spec", "data", "paths", index]
        if url is None:
            findings.append(
                Finding(
                    "data.not_in_remote",
                    loc,
                    f"{item['path']}: the repository has no default DVC remote",
                    "dvc remote add -d <name> <url>, then dvc push",
                )
            )
        elif not _object_present(url, options, item["md5"], base):
            findings.append(
                Finding(
                    "data.not_in_remote",
                    loc,
                    f"{item['path']} (md5 {item['md5']}) is not in the DVC remote {url}",
                    f"dvc push {item['path']}",
                )
            )
    return findings


def check(
    spec: TaskSpec, resolved: dict[str, Any], cache: Path, policy: dict[str, str]
) -> list[Finding]:
    findings: list[Finding] = []
    for maybe in (
        _params_finding(spec),
        _image_finding(spec, resolved),
        _environment_finding(resolved),
    ):
        if maybe:
            findings.append(maybe)
    if spec.code is not None and resolved.get("commit"):
        findings += _code_findings(spec, resolved["commit"], cache)
    if spec.data is not None and resolved.get("data"):
        findings += _data_findings(spec, resolved["data"], cache)
    return [
        Finding(f.code, f.loc, f.message, f.fix, policy.get(f.code, "warn"))
        for f in findings
        if policy.get(f.code, "warn") != "ignore"
    ]


def load_pipeline(path: Path) -> list[dict[str, Any]]:
    """Tasks of a pipeline file: {tasks: [{name, spec}]} or a bare list of them."""
    doc = yaml.safe_load(path.read_text())
    tasks = doc.get("tasks") if isinstance(doc, dict) else doc
    if not isinstance(tasks, list):
        raise ValueError(f"{path} must hold a list of tasks or a mapping with 'tasks'")
    return tasks
