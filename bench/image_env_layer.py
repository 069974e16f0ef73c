"""Cold build of the wine example's environment layer for the task image (`--lock`).

    python bench/image_env_layer.py [--lock examples/wine/uv.lock] [--warm-uv-cache]

What `tracectl image build --lock` adds to a cold CI run on top of the base and runtime
layers: `uv export` of the lock, `uv pip install --prefix` of it (an empty uv cache, so every
wheel comes from the index, unless --warm-uv-cache) and the layer's tar + gzip, into an empty
OCI layout. Nothing is pushed. The JSON on stdout carries wall and CPU seconds (this process
and its children), the layer's size, the command and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + own.ru_utime + own.ru_stime


def main() -> None:
    sys.path.insert(0, str(REPO))
    from bench.machine import load, machine
    from controller.images.build import BuildRequest, cached_layer, env_requirements, env_root

    parser = argparse.ArgumentParser()
    parser.add_argument("--lock", type=Path, default=REPO / "examples" / "wine" / "uv.lock")
    parser.add_argument("--warm-uv-cache", action="store_true")
    args = parser.parse_args()
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="tracectl-envlayer-") as tmp:
        root = Path(tmp)
        if not args.warm_uv_cache:
            os.environ["UV_CACHE_DIR"] = str(root / "uv-cache")
        req = BuildRequest(registry="unused", source=REPO, cache=root, lock=args.lock.resolve())
        layout = root / "oci"
        wall, cpu = time.monotonic(), children_cpu_s()
        requirements = env_requirements(req, root)
        assert requirements is not None
        layer = cached_layer(layout, "bench", lambda work: env_root(requirements, work))
        wall, cpu = time.monotonic() - wall, children_cpu_s() - cpu
    print(
        json.dumps(
            {
                "command": " ".join(["python", *sys.argv]),
                "lock": str(args.lock),
                "uv_cache": "warm" if args.warm_uv_cache else "empty",
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "layer_bytes": layer.size,
                "machine": machine(load_before),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
