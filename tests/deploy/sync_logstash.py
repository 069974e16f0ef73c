"""Copy logstash/pipeline/tracectl.conf into deploy/k8s/base/logstash.yaml (ConfigMap data).

    python -m tests.deploy.sync_logstash          # rewrite the ConfigMap block in place
    python -m tests.deploy.sync_logstash --check  # exit 1 when it is out of date

The base has no configMapGenerator (a plain reader must expand it), so the pipeline is copied;
tests/deploy/test_k8s_manifests.py fails while the two differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "logstash" / "pipeline" / "tracectl.conf"
MANIFEST = REPO / "deploy" / "k8s" / "base" / "logstash.yaml"
KEY_LINE = "  tracectl.conf: |\n"
INDENT = "    "


def render(manifest: str, pipeline: str) -> str:
    head, sep, rest = manifest.partition(KEY_LINE)
    if not sep:
        raise SystemExit(f"{MANIFEST}: no line {KEY_LINE.strip()!r}")
    _, dashes, tail = rest.partition("\n---\n")
    if "\t" in pipeline or any(line != line.rstrip() for line in pipeline.splitlines()):
        raise SystemExit(f"{PIPELINE}: tabs or trailing spaces do not survive a YAML block")
    body = "".join(
        INDENT + line if line.strip() else line for line in pipeline.splitlines(keepends=True)
    )
    out = head + sep + body.rstrip("\n") + ("\n---\n" + tail if dashes else "\n")
    data = [
        d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "logstash-pipeline"
    ]
    if data[0]["data"]["tracectl.conf"] != pipeline:
        raise SystemExit("the copy does not read back equal (trailing blank lines?)")
    return out


def main(argv: list[str]) -> int:
    current = MANIFEST.read_text()
    wanted = render(current, PIPELINE.read_text())
    if "--check" in argv:
        return 0 if wanted == current else 1
    if wanted != current:
        MANIFEST.write_text(wanted)
        print(f"updated {MANIFEST.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
