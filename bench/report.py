"""Runs every benchmark in bench/ and writes docs/performance.md (tables + PNG plots).

    python bench/report.py                 # all benchmarks, services from deploy/local
    python bench/report.py --only leases   # a subset
    python bench/report.py --from-json out/ # re-render from saved JSON

Each benchmark prints one JSON object on stdout that includes the command that produced it;
this script records the machine and versions, runs them one after another (they share two
cores, so never in parallel), and renders what they printed. A benchmark that fails is
reported as failed in the page, with its error, rather than silently left out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import load
from bench.machine import machine as bench_machine

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
IMG = DOCS / "img"

# name -> (script args, deploy/local services it needs)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "leases": (["bench/leases.py"], ["postgres"]),
    "logs": (["bench/logs.py"], ["kafka", "opensearch", "shipper"]),
    "dispatch": (["bench/dispatch.py"], ["kubernetes"]),
    "lineage": (["bench/lineage.py"], []),
    "logs_cli": (["bench/logs_cli.py"], []),
    "environments": (["bench/environments.py"], []),
    "console": (["bench/console.py"], []),
}
TARGETS = {
    "leases": ">= 1,000 decisions/s, zero double grants",
    "logs": ">= 50,000 lines/s into Kafka, p95 < 2 s line -> searchable",
    "dispatch": "POST task -> Job p99 < 50 ms, >= 20x less overhead than KubernetesPodOperator",
    "lineage": "p95 < 50 ms per query, >= 10x faster than MLflow search_runs",
    "logs_cli": "1,000,000 lines printed < 5 s, --tail 100 < 0.3 s",
    "environments": "warm hit < 50 ms; per-task overhead >= 5x below Airflow's LocalExecutor",
    "console": "runs list over 100,000 runs p95 < 300 ms server time; a 1,000,000-line log "
    "paged without loading it whole",
}


def service_env(names: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in names:
        script = REPO / "deploy" / "local" / name
        subprocess.run([str(script), "start"], check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run([str(script), "env"], check=True, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
    return env


def last_json(text: str) -> dict[str, Any]:
    for start in [i for i, ch in enumerate(text) if ch == "{"]:
        try:
            value = json.loads(text[start:])
            if isinstance(value, dict):
                return value
        except json.JSONDecodeError:
            continue
    raise ValueError("the benchmark printed no JSON object")


def run_bench(name: str) -> dict[str, Any]:
    args, services = BENCHES[name]
    if not (REPO / args[0]).exists():
        return {"error": f"{args[0]} does not exist"}
    started = time.monotonic()
    try:
        env = {**os.environ, **service_env(services)}
        out = subprocess.run(
            [sys.executable, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return {"error": str(exc)}
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr[-2000:]}"}
    try:
        result = last_json(out.stdout)
    except ValueError as exc:
        return {"error": str(exc)}
    result.setdefault("command", " ".join(["python", *args]))
    result["_wall_s"] = round(time.monotonic() - started, 1)
    return result


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, item in value.items():
            rows += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        rows = []
        for index, item in enumerate(value):
            rows += flatten(item, f"{prefix}[{index}]")
        return rows
    return [(prefix, value)]


def plot(name: str, result: dict[str, Any]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("p50", "p95", "p99", "per_s", "ratio", "_ms")
    rows = [
        (k, float(v))
        for k, v in flatten(result)
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and v > 0
        and any(s in k for s in keys)
    ][:40]
    if not rows:
        return None
    IMG.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.28 * len(rows))))
    ax.barh([k for k, _ in rows][::-1], [v for _, v in rows][::-1], color="#4477aa")
    ax.set_xscale("log")
    ax.set_title(f"{name} (log scale)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path = IMG / f"bench-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"img/{path.name}"


def machine() -> dict[str, str]:
    """The page's machine table: the bench block's figures, with the memory and the kernel."""
    block = bench_machine(load())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{block['processor']}, {block['cpus']} cores, {memory} GiB",
        "kernel": platform.release(),
        "python": block["python"],
        "git commit": block["git_commit"],
    }


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Performance",
        "",
        "Generated by `python bench/report.py` (do not edit by hand). Every figure below "
        "was printed by the benchmark's own command, shown with it.",
        "",
        "| machine | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in machine().items()]
    for name, result in results.items():
        lines += ["", f"## {name}", "", f"Target: {TARGETS.get(name, '-')}", ""]
        if "error" in result:
            lines += [f"**Failed**: `{result['error'][:500]}`"]
            continue
        lines += [f"Command: `{result.get('command')}`", ""]
        image = plot(name, result)
        if image:
            lines += [f"![{name}]({image})", ""]
        lines += ["| metric | value |", "|---|---|"]
        for key, value in flatten(result):
            if key in ("command",) or key.startswith("_"):
                continue
            shown = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"| {key} | {shown} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES))
    parser.add_argument("--from-json", type=Path, help="folder of <name>.json to re-render")
    parser.add_argument("--save-json", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    names = args.only or list(BENCHES)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        saved = (args.from_json or Path("/nonexistent")) / f"{name}.json"
        if args.from_json and saved.exists():
            results[name] = json.loads(saved.read_text())
            continue
        print(f"running {name}…", file=sys.stderr, flush=True)
        results[name] = run_bench(name)
        args.save_json.mkdir(parents=True, exist_ok=True)
        (args.save_json / f"{name}.json").write_text(json.dumps(results[name], indent=2))
    (DOCS / "performance.md").write_text(render(results))
    print(f"wrote {DOCS / 'performance.md'}", file=sys.stderr)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
