"""Shipper figures: Kafka -> index throughput and line -> searchable latency, side by side.

    python bench/logs_shipper.py                      # rsyslog -> OpenSearch, -> Elasticsearch
    python bench/logs_shipper.py --lines 100000 --latency-lines 2000 --rate 200
    python bench/logs_shipper.py --queue memory   # the same, queues in memory (not kill -9 safe)
    python bench/logs_shipper.py --conf OLD.conf  # another rsyslog configuration, side by side
    python bench/logs_shipper.py --queue-dir /dev/shm  # the disk queues' files on tmpfs

The Python stand-in rsyslog replaced (deploy/local/shipper.d/shipper.py) was measured side by
side with it before it was removed (``--homemade`` at commit 54cf59f); that run's JSON is
docs/bench/2026-12-05-shippers.json.

Needs deploy/local kafka, opensearch, elasticsearch (and deploy/local/shipper install, for
rsyslog and the index template). Each measurement runs its own shipper process over a private
topic (3 partitions) and data stream (logs-tracectl-bench<id>-default): rsyslog runs
logstash/rsyslog/tracectl.conf with only the topic and index names changed (and, with
``--queue memory``, its rulesets' disk queues made disk-assisted: in memory, spilling to disk only
when the index falls behind; the figure the disk queues are weighed against, see docs/logs.md).

throughput: the shipper starts and ships a warm-up line (start-up and group join excluded);
            then N lines go to the topic as fast as confluent-kafka sends them, and the clock
            runs until the index counts them all (polled with a refresh every --poll-ms).
            lines_per_s = N / that time; cpu_s = the shipper process's CPU time over it (all
            its threads); lines_per_cpu_s = N / cpu_s ~ what one free core ships.
latency:    the shipper runs; lines go to the topic at --rate lines/s; this process polls the
            index (no forced refresh: searchable after the index's own 1 s refresh) and
            records when each line first shows. Latency = first seen - produced.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Producer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from bench.machine import load, machine
from bench.stats import summary
from controller import backends
from controller.ports import SearchIndex

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "logstash" / "rsyslog" / "tracectl.conf"
TARGET_LINES_PER_S = 50_000
TARGET_P95_S = 2.0


def service_env(name: str) -> dict[str, str]:
    out = subprocess.run(
        [str(REPO / "deploy" / "local" / name), "env"], capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def document(run: str, seq: int, width: int) -> bytes:
    """One line as the controller's Kafka sink writes it (ECS fields, id task:attempt:seq)."""
    return json.dumps(
        {
            "@timestamp": datetime.now(UTC).isoformat(),
            "message": f"{seq:08d} " + "x" * width,
            "log": {"level": "info"},
            "service": {"name": "tracectl"},
            "labels": {"run_id": run, "task_id": run, "attempt": "1", "stream": "stdout"},
            "event": {"id": f"{run}:1:{seq}", "sequence": seq, "dataset": "tracectl.task"},
        }
    ).encode()


def private_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, run: str, first: int, count: int, width: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for seq in range(first, first + count):
        while True:
            try:
                producer.produce(topic, key=run.encode(), value=document(run, seq, width))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def rsyslog(
    engine_url: str,
    bootstrap: str,
    topic: str,
    stream: str,
    work: Path,
    queue: str = "disk",
    conf: Path = CONF,
) -> subprocess.Popen[bytes]:
    """rsyslogd with the project's configuration, renamed to a private topic and stream."""
    text = conf.read_text().replace('topic="tracectl.logs"', f'topic="{topic}"')
    text = text.replace('"logs-tracectl-default"', f'"{stream}"')
    if queue == "memory":  # a LinkedList queue with a file name is disk-assisted
        text = text.replace(
            'queue.type="Disk"', 'queue.type="LinkedList" queue.highWatermark="800000"'
        )
    conf = work / "tracectl.conf"
    conf.write_text(text)
    env = {
        **os.environ,
        "RSYSLOG_WORKDIR": str(work),
        "RSYSLOG_KAFKA_BOOTSTRAP": bootstrap,
        "RSYSLOG_KAFKA_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
        "RSYSLOG_ES_SERVER": engine_url,
        "RSYSLOG_ES_USER": "",
        "RSYSLOG_ES_PASSWORD": "",
    }
    return subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "pid")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


SHIPPERS = {"rsyslog": rsyslog}


def count(client: SearchIndex, stream: str) -> int:
    """Documents in STREAM; 0 while its first shard is not yet searchable (a 503 then)."""
    try:
        client.refresh(stream)
        body = {"size": 0, "track_total_hits": True, "query": {"match_all": {}}}
        return int(client.search(stream, body)["hits"]["total"]["value"])
    except Exception as error:  # the engine's client raises its own types; only a 503 is expected
        if getattr(error, "status_code", None) == 503 or getattr(error, "status", None) == 503:
            return 0
        raise


def cpu_s(process: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return float(times.user + times.system)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def throughput(
    kind: str,
    engine: str,
    urls: dict[str, str],
    bootstrap: str,
    lines: int,
    width: int,
    poll_ms: int,
) -> dict[str, Any]:
    run = f"bench{uuid.uuid4().hex[:8]}"
    topic, stream = f"bench.shipper.{run}", f"logs-tracectl-{run}-default"
    private_topic(bootstrap, topic)
    client = backends.search_index(f"{engine}://{urls[engine].split('://', 1)[1]}")
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-") as work:
        process = started(kind, engine, urls, bootstrap, topic, stream, Path(work), width)
        try:
            cpu_before, start = cpu_s(process), time.perf_counter()
            produce(bootstrap, topic, run, 1, lines, width)
            done, deadline = 0, start + 600
            while done < lines + 1 and time.perf_counter() < deadline and process.poll() is None:
                time.sleep(poll_ms / 1000)
                done = count(client, stream)
            elapsed = time.perf_counter() - start
            used = cpu_s(process) - cpu_before if process.poll() is None else float("nan")
        finally:
            stop(process)
    done -= 1  # the warm-up line
    return {
        "lines": lines,
        "indexed": done,
        "seconds": round(elapsed, 2),
        "lines_per_s": round(done / elapsed),
        "cpu_s": round(used, 2),
        "lines_per_cpu_s": round(done / used) if used == used and used > 0 else None,
    }


def started(
    kind: str,
    engine: str,
    urls: dict[str, str],
    bootstrap: str,
    topic: str,
    stream: str,
    work: Path,
    width: int,
) -> subprocess.Popen[bytes]:
    """The shipper, once a warm-up line (sequence 0) is searchable: its start-up and consumer
    group join are not part of the figures."""
    process = SHIPPERS[kind](urls[engine], bootstrap, topic, stream, work)
    client = backends.search_index(f"{engine}://{urls[engine].split('://', 1)[1]}")
    try:
        produce(bootstrap, topic, topic.rsplit(".", 1)[-1], 0, 1, width)
        deadline = time.perf_counter() + 120
        while count(client, stream) < 1:
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{kind} -> {engine} shipped nothing within 120 s")
            time.sleep(0.2)
    except BaseException:
        stop(process)  # never leave a shipper behind
        raise
    return process


def latency(
    kind: str,
    engine: str,
    urls: dict[str, str],
    bootstrap: str,
    lines: int,
    rate: float,
    width: int,
    poll_ms: int,
) -> dict[str, Any]:
    run = f"bench{uuid.uuid4().hex[:8]}"
    topic, stream = f"bench.shipper.{run}", f"logs-tracectl-{run}-default"
    private_topic(bootstrap, topic)
    client = backends.search_index(f"{engine}://{urls[engine].split('://', 1)[1]}")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-") as work:
        process = started(kind, engine, urls, bootstrap, topic, stream, Path(work), width)
        try:
            emitted, seen = measure(
                producer, client, topic, stream, run, lines, rate, width, poll_ms
            )
        finally:
            stop(process)
    delays = [seen[s] - emitted[s] for s in seen if s in emitted]
    return {
        "lines": lines,
        "rate_lines_per_s": rate,
        "poll_ms": poll_ms,
        "searchable": len(delays),
        "lost": lines - len(delays),
        **summary(delays, (0.5, 0.95, 0.99), unit="s", digits=3),
    }


def measure(
    producer: Producer,
    client: SearchIndex,
    topic: str,
    stream: str,
    run: str,
    lines: int,
    rate: float,
    width: int,
    poll_ms: int,
) -> tuple[dict[int, float], dict[int, float]]:
    """Produce LINES at RATE; poll the index (no refresh); when each line was sent and seen."""
    emitted: dict[int, float] = {}
    seen: dict[int, float] = {}
    start = next_poll = time.perf_counter()
    seq, deadline = 0, start + lines / rate + 60
    while len(seen) < lines and time.perf_counter() < deadline:
        now = time.perf_counter()
        while seq < lines and now - start >= seq / rate:
            seq += 1
            emitted[seq] = time.perf_counter()
            producer.produce(topic, key=run.encode(), value=document(run, seq, width))
            producer.poll(0)
        if now >= next_poll:
            body = {
                "query": {"range": {"event.sequence": {"gte": 1}}},
                "size": 10000,
                "_source": ["event.sequence"],
            }
            hits = client.search(stream, body)["hits"]["hits"]
            stamp = time.perf_counter()
            for hit in hits:
                seen.setdefault(int(hit["_source"]["event"]["sequence"]), stamp)
            next_poll = stamp + poll_ms / 1000
        time.sleep(0.001)
    producer.flush(30)
    return emitted, seen


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every (shipper, engine) pair's figures."""
    bootstrap = service_env("kafka")["TRACECTL_KAFKA_BOOTSTRAP"]
    urls = {
        "opensearch": service_env("opensearch")["TRACECTL_OPENSEARCH_URL"],
        "elasticsearch": service_env("elasticsearch")["TRACECTL_ELASTICSEARCH_URL"],
    }
    pairs = [("rsyslog", "opensearch"), ("rsyslog", "elasticsearch")]
    out: dict[str, Any] = {}
    for kind, engine in pairs:
        figures = out[f"{kind}->{engine}"] = {
            "throughput": throughput(
                kind, engine, urls, bootstrap, args.lines, args.width, args.poll_ms
            )
        }
        figures["latency"] = latency(
            kind, engine, urls, bootstrap, args.latency_lines, args.rate, args.width, args.poll_ms
        )
        lat = figures["latency"]["p95_s"]
        per_core = figures["throughput"]["lines_per_cpu_s"]
        figures["met"] = {
            "p95_s": lat is not None and lat < TARGET_P95_S,
            "lines_per_cpu_s": per_core is not None and per_core >= TARGET_LINES_PER_S,
        }
    return out


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=100_000, help="throughput run, lines")
    parser.add_argument("--width", type=int, default=100, help="message bytes")
    parser.add_argument("--latency-lines", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="latency run, lines/s")
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument("--conf", type=Path, default=CONF, help="rsyslog configuration")
    parser.add_argument(
        "--queue", choices=["disk", "memory"], default="disk", help="rsyslog's ruleset queues"
    )
    parser.add_argument(
        "--queue-dir",
        type=Path,
        default=None,
        help="where rsyslog's work directory (its queue files) is made (default: TMPDIR)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments(parser)
    args = parser.parse_args()
    SHIPPERS["rsyslog"] = functools.partial(rsyslog, queue=args.queue, conf=args.conf)
    if args.queue_dir:  # each measurement's work directory is a TemporaryDirectory
        tempfile.tempdir = str(args.queue_dir)
    load_at_start = load()
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "targets": {"lines_per_cpu_s": TARGET_LINES_PER_S, "p95_s": TARGET_P95_S},
        "rsyslog_conf": str(args.conf),
        "rsyslog_queue": args.queue,
        "rsyslog_queue_dir": tempfile.gettempdir(),
        "shippers": run(args),
    }
    result["machine"] = machine(load_at_start)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
