"""Lineage queries on a 100k-run store, and MLflow's search_runs on the same runs.

    python bench/lineage.py                       # 100k runs, SQLite, JSON on stdout
    python bench/lineage.py --runs 20000 --mlflow-runs 20000 --samples 100
    python bench/lineage.py --dir /tmp/lb --reuse   # re-time the stores a run left in /tmp/lb

Generates runs of a three-task pipeline (prepare -> train -> evaluate) straight into the
real tables with SQLAlchemy core (runs, tasks, artifacts, task_inputs, lineage_events), with
fan-in (a prepare reads 1-3 of many dataset versions; evaluate reads two artifacts) and
fan-out (each dataset version feeds ~200 runs; 10% of trains reuse an earlier run's
train.csv by sha256). The graph tables are then built the production way, by projecting
the event log (timed). Each query runs against random keys; p50/p95 are in milliseconds.

MLflow gets one run per tracectl run with the tags `dataset` (the run's first dataset
version), `tracectl.run_id` and `git.commit`, in an MLflow SQLite store. Its rows are bulk
inserted into MLflow's own tables (a template run made through MlflowClient gives the
column values), because logging 100k runs through the client takes hours; search_runs is
then called through MlflowClient as a user would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.machine import load, machine
from bench.stats import summary
from controller.auth.scope import Scope
from controller.lineage.diff import diff_runs
from controller.lineage.graph import LineageGraph
from controller.lineage.projection import catch_up
from controller.store.database import Database
from controller.store.schema import (
    ArtifactRow,
    LineageEventRow,
    RunRow,
    TaskInputRow,
    TaskRow,
)

CHUNK = 20_000


def sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def md5(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


class Generator:
    def __init__(self, runs: int, seed: int) -> None:
        self.runs = runs
        self.rng = random.Random(seed)
        n_versions = max(10, runs // 100)  # runs read 2 on average: ~200 runs per version
        self.datasets = [(f"data/set{i % 200}.csv", md5("ds", i)) for i in range(n_versions)]
        self.commits = [sha("commit", i)[:40] for i in range(max(10, runs // 50))]
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)
        self.rows: dict[str, list[dict[str, Any]]] = {
            k: [] for k in ("runs", "tasks", "artifacts", "inputs", "events")
        }
        self.keys: dict[str, list[Any]] = {
            "datasets": [],
            "artifacts": [],
            "uris": [],
            "metrics": [],
            "mlflow": [],
            "commits": [],
            "runs": [],
        }
        self.mlflow_tags: list[tuple[str, str, str]] = []  # run id, dataset tag, commit
        self.event_id = 0

    def _event(
        self, run_id: str, task_id: str, kind: str, payload: dict[str, Any], at: datetime
    ) -> None:
        self.event_id += 1
        self.rows["events"].append(
            {
                "id": self.event_id,
                "run_id": run_id,
                "task_id": task_id,
                "type": kind,
                "payload": payload,
                "created_at": at,
            }
        )

    def _task(
        self,
        run_id: str,
        name: str,
        at: datetime,
        commit: str,
        data: list[tuple[str, str]],
        inputs: list[dict[str, Any]],
        outputs: list[str],
        params: dict[str, Any],
    ) -> tuple[str, dict[str, str]]:
        task_id = f"task_{uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]}"
        spec = {
            "command": ["python", f"{name}.py"],
            "code": {"repo": "git@example:ml.git", "ref": "main", "commit": commit},
            "params": params,
            "outputs": outputs,
            "mode": "job",
            "image": "python:3.11",
        }
        resolved = {
            "commit": commit,
            "dirty": False,
            "ref": "main",
            "data": [{"path": p, "md5": m, "rev": commit} for p, m in data],
        }
        mlflow_id = uuid.UUID(int=self.rng.getrandbits(128)).hex
        self.rows["tasks"].append(
            {
                "id": task_id,
                "run_id": run_id,
                "name": name,
                "team": "default",
                "spec": spec,
                "resolved": resolved,
                "status": "succeeded",
                "priority": 0,
                "attempt": 1,
                "max_attempts": 1,
                "cancel_requested": False,
                "mlflow_run_id": mlflow_id,
                "created_at": at,
                "updated_at": at,
                "finished_at": at,
            }
        )
        self._event(
            run_id,
            task_id,
            "task.submitted",
            {"name": name, "resolved": resolved, "spec": spec},
            at,
        )
        self._event(run_id, task_id, "task.admitted", {"attempt": 1, "leases": []}, at)
        for item in inputs:
            self.rows["inputs"].append(
                {
                    "task_id": task_id,
                    "sha256": item["sha256"],
                    "uri": item["uri"],
                    "path": item["path"],
                    "produced_by_task": item["produced_by_task"],
                }
            )
            self._event(run_id, task_id, "input.used", item, at)
        produced = {}
        for path in outputs:
            digest = sha(run_id, name, path) if name != "prepare" else sha(data, path)
            uri = f"file:///store/{digest[:2]}/{digest}"
            self.rows["artifacts"].append(
                {
                    "sha256": digest,
                    "uri": uri,
                    "size": 1000,
                    "media_type": "application/octet-stream",
                    "path": path,
                    "task_id": task_id,
                    "run_id": run_id,
                    "created_at": at,
                }
            )
            self._event(
                run_id,
                task_id,
                "output.produced",
                {
                    "path": path,
                    "sha256": digest,
                    "uri": uri,
                    "size": 1000,
                    "media_type": "application/octet-stream",
                },
                at,
            )
            produced[path] = digest
        self._event(
            run_id,
            task_id,
            "task.completed",
            {"attempt": 1, "status": "succeeded", "exit_code": 0},
            at,
        )
        self.keys["mlflow"].append(mlflow_id)
        return task_id, produced

    def run(self, index: int) -> None:
        rng = self.rng
        run_id = f"run_{index:08d}"
        at = self.t0 + timedelta(seconds=index)
        commit = rng.choice(self.commits)
        data = rng.sample(self.datasets, rng.randint(1, 3))
        self.rows["runs"].append(
            {
                "id": run_id,
                "pipeline": f"pipeline{index % 50}",
                "status": "succeeded",
                "team": "default",
                "labels": {},
                "created_at": at,
                "updated_at": at,
                "finished_at": at,
            }
        )
        prep_id, prep = self._task(
            run_id,
            "prepare",
            at,
            commit,
            data,
            [],
            ["prepared/train.csv", "prepared/test.csv"],
            {"seed": 42},
        )
        train_src, train_by = prep["prepared/train.csv"], prep_id
        if index > 100 and rng.random() < 0.1:
            # Fan-out across runs: reuse an earlier run's train.csv by content hash.
            train_src, train_by = rng.choice(self.keys["artifacts"])
        train_in = [
            {
                "path": "train.csv",
                "sha256": train_src,
                "uri": f"file:///store/{train_src[:2]}/{train_src}",
                "produced_by_task": train_by,
            }
        ]
        train_id, train = self._task(
            run_id,
            "train",
            at,
            commit,
            [],
            train_in,
            ["model/model.pkl"],
            {"n_estimators": rng.choice([10, 50, 100])},
        )
        evaluate_in = [
            {
                "path": "model.pkl",
                "sha256": train["model/model.pkl"],
                "uri": f"file:///store/x/{train['model/model.pkl']}",
                "produced_by_task": train_id,
            },
            {
                "path": "test.csv",
                "sha256": prep["prepared/test.csv"],
                "uri": f"file:///store/x/{prep['prepared/test.csv']}",
                "produced_by_task": prep_id,
            },
        ]
        _, evaluate = self._task(
            run_id, "evaluate", at, commit, [], evaluate_in, ["metrics.json"], {}
        )
        self.keys["artifacts"].append((prep["prepared/train.csv"], prep_id))
        self.keys["metrics"].append(evaluate["metrics.json"])
        self.keys["datasets"].append(data[0])
        self.keys["commits"].append(commit)
        self.keys["runs"].append(run_id)
        self.keys["uris"].append(
            f"file:///store/{train['model/model.pkl'][:2]}/{train['model/model.pkl']}"
        )
        self.mlflow_tags.append((run_id, f"{data[0][0]}@{data[0][1]}", commit))

    def flush(self, db: Database) -> None:
        tables = {
            "runs": RunRow,
            "tasks": TaskRow,
            "artifacts": ArtifactRow,
            "inputs": TaskInputRow,
            "events": LineageEventRow,
        }
        with db.write() as session:
            for key, model in tables.items():
                if self.rows[key]:
                    session.execute(insert(model), self.rows[key])
                    self.rows[key] = []


def keys_from_store(db: Database, sample: int = 5000) -> dict[str, list[Any]]:
    """Query keys of an existing bench store (--reuse), picked at random by SQL."""
    from sqlalchemy import func, select

    from controller.store.lineage_schema import LineageEdgeRow

    def pick(query: Any) -> list[Any]:
        with db.read() as session:
            return list(session.execute(query.order_by(func.random()).limit(sample)).scalars())

    datasets = pick(select(LineageEdgeRow.src).where(LineageEdgeRow.src.like("data:%")).distinct())
    return {
        "datasets": [tuple(d[5:].rsplit("@", 1)) for d in datasets],
        "metrics": pick(select(ArtifactRow.sha256).where(ArtifactRow.path == "metrics.json")),
        "uris": pick(select(ArtifactRow.uri).where(ArtifactRow.path == "model/model.pkl")),
        "mlflow": pick(select(TaskRow.mlflow_run_id)),
        "commits": [
            c[7:]
            for c in pick(
                select(LineageEdgeRow.src).where(LineageEdgeRow.src.like("commit:%")).distinct()
            )
        ],
        "runs": pick(select(RunRow.id)),
    }


def timed(fn: Callable[[], Any], samples: int) -> dict[str, Any]:
    fn()  # warm the page cache and the statement cache
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {**summary(times, digits=3), "samples": samples}


def bench_tracectl(db: Database, keys: dict[str, list[Any]], samples: int) -> dict[str, Any]:
    graph = LineageGraph(db, Scope.everything())
    rng = random.Random(7)
    results: dict[str, Any] = {}

    def pick(key: str) -> Any:
        return rng.choice(keys[key])

    def by_dataset() -> Any:
        path, digest = pick("datasets")
        return graph.runs_using_dataset(path, digest, limit=1000)

    results["runs_using_dataset"] = timed(by_dataset, samples)
    results["produced_artifact_sha256"] = timed(
        lambda: graph.lookup(sha256=pick("metrics")), samples
    )
    results["upstream_of_metrics_depth10"] = timed(
        lambda: graph.walk(f"artifact:{pick('metrics')}", "upstream", 10, 100), samples
    )
    results["downstream_of_dataset_depth10_page100"] = timed(
        lambda: graph.walk("data:{}@{}".format(*pick("datasets")), "downstream", 10, 100), samples
    )
    results["lookup_uri"] = timed(lambda: graph.lookup(uri=pick("uris")), samples)
    results["lookup_mlflow_run_id"] = timed(
        lambda: graph.lookup(mlflow_run_id=pick("mlflow")), samples
    )
    results["lookup_commit"] = timed(lambda: graph.lookup(commit=pick("commits")), samples)
    results["diff_two_runs"] = timed(lambda: diff_runs(db, pick("runs"), pick("runs")), samples)
    hits = [len(by_dataset()["items"]) for _ in range(50)]
    results["runs_using_dataset"]["mean_rows"] = round(statistics.mean(hits), 1)
    return results


def bench_mlflow(root: Path, gen: Generator | None, runs: int, samples: int) -> dict[str, Any]:
    import mlflow
    from mlflow.tracking import MlflowClient
    from sqlalchemy import MetaData, create_engine, func, select

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    engine = create_engine(uri)
    load_s = 0.0
    if gen is None:  # --reuse: the runs are already there
        found = client.get_experiment_by_name("bench")
        assert found is not None, "no MLflow store to reuse"
        experiment = found.experiment_id
        meta = MetaData()
        meta.reflect(engine, only=["tags"])
        with engine.begin() as conn:
            values: list[Any] = list(
                conn.execute(
                    select(meta.tables["tags"].c.value)
                    .where(meta.tables["tags"].c.key == "dataset")
                    .limit(5000)
                ).scalars()
            )
            tagged = [("", str(v), "") for v in values if v != "x"]  # not the template
            runs = conn.execute(
                select(func.count())
                .select_from(meta.tables["tags"])
                .where(meta.tables["tags"].c.key == "dataset", meta.tables["tags"].c.value != "x")
            ).scalar_one()
    else:
        experiment = client.create_experiment("bench")
        template = client.create_run(experiment, tags={"dataset": "x"}).info.run_id
        meta = MetaData()
        meta.reflect(engine, only=["runs", "tags"])
        runs_t, tags_t = meta.tables["runs"], meta.tables["tags"]
        with engine.begin() as conn:
            base = dict(
                conn.execute(select(runs_t).where(runs_t.c.run_uuid == template)).mappings().one()
            )
        start = time.perf_counter()
        tagged = gen.mlflow_tags[:runs]
        for offset in range(0, len(tagged), CHUNK):
            chunk = tagged[offset : offset + CHUNK]
            run_rows, tag_rows = [], []
            for run_id, dataset, commit in chunk:
                run_uuid = uuid.uuid5(uuid.NAMESPACE_URL, run_id).hex
                run_rows.append({**base, "run_uuid": run_uuid, "name": run_id})
                tag_rows += [
                    {"key": "dataset", "value": dataset, "run_uuid": run_uuid},
                    {"key": "tracectl.run_id", "value": run_id, "run_uuid": run_uuid},
                    {"key": "git.commit", "value": commit, "run_uuid": run_uuid},
                ]
            with engine.begin() as conn:
                conn.execute(runs_t.insert(), run_rows)
                conn.execute(tags_t.insert(), tag_rows)
        load_s = time.perf_counter() - start
        runs = len(tagged)
    rng = random.Random(7)

    def by_dataset() -> Any:
        _, dataset, _ = rng.choice(tagged)
        found: list[Any] = []
        token = None
        while True:
            page = client.search_runs(
                [experiment], f"tags.dataset = '{dataset}'", max_results=1000, page_token=token
            )
            found += page
            token = page.token
            if not token:
                return found

    result: dict[str, Any] = {
        "search_runs_tag_dataset": timed(by_dataset, samples),
        "runs": runs,
        "bulk_load_s": round(load_s, 1),
        "mlflow_version": mlflow.__version__,
    }
    hits = [len(by_dataset()) for _ in range(20)]
    result["search_runs_tag_dataset"]["mean_rows"] = round(statistics.mean(hits), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument(
        "--mlflow-runs", type=int, default=None, help="runs loaded into MLflow (default: --runs)"
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="keep the stores here")
    parser.add_argument(
        "--reuse", action="store_true", help="time the queries on the stores already in --dir"
    )
    args = parser.parse_args()
    load_at_start = load()
    root = args.dir or Path(tempfile.mkdtemp(prefix="lineage-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{root / 'tracectl.db'}")
    db.migrate()
    store: dict[str, Any] = {"backend": "sqlite"}
    gen: Generator | None = None
    if args.reuse:
        from sqlalchemy import func, select

        with db.read() as session:
            store["runs"] = session.scalar(select(func.count()).select_from(RunRow))
        keys = keys_from_store(db)
    else:
        gen = Generator(args.runs, args.seed)
        start = time.perf_counter()
        for index in range(args.runs):
            gen.run(index)
            if len(gen.rows["events"]) >= CHUNK * 5:
                gen.flush(db)
        gen.flush(db)
        store.update(
            runs=args.runs,
            tasks=args.runs * 3,
            dataset_versions=len(gen.datasets),
            bulk_load_s=round(time.perf_counter() - start, 1),
        )
        keys = gen.keys
    start = time.perf_counter()
    events = catch_up(db)
    project_s = time.perf_counter() - start
    if events:
        store.update(
            events=events,
            projection_s=round(project_s, 1),
            projection_events_per_s=round(events / project_s),
        )
    with db.read() as session:
        from sqlalchemy import func, select

        from controller.store.lineage_schema import LineageEdgeRow

        store["edges"] = session.scalar(select(func.count()).select_from(LineageEdgeRow))
    ours = bench_tracectl(db, keys, args.samples)
    theirs = bench_mlflow(root, gen, args.mlflow_runs or args.runs, args.samples)
    ratio = theirs["search_runs_tag_dataset"]["p50_ms"] / ours["runs_using_dataset"]["p50_ms"]
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(load_at_start),
        "store": store,
        "tracectl": ours,
        "mlflow": theirs,
        "which_runs_used_dataset_speedup_p50": round(ratio, 1),
        "which_runs_used_dataset_speedup_p95": round(
            theirs["search_runs_tag_dataset"]["p95_ms"] / ours["runs_using_dataset"]["p95_ms"], 1
        ),
        "same_run_count": theirs["runs"] == store["runs"],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
