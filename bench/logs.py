"""Log pipeline figures: lines/s into Kafka from one process, and line -> searchable latency.

    python bench/logs.py             # both; needs deploy/local kafka, opensearch, shipper
    python bench/logs.py --lines 200000 --latency-lines 2000 --rate 200
    python bench/logs.py --skip-latency --clients confluent
    python bench/logs.py --shippers   # and bench/logs_shipper.py's figures

cpu_us_per_line: CPU time of this process (all its threads, librdkafka's included) per line:
            steadier than lines/s on a shared machine; 1e6 / it ~ lines/s one free core allows.
throughput: KafkaLogSink (the runner's sink, spool included) fed N lines as fast as one thread
            can, once per Kafka client (--clients, TRACECTL_KAFKA_CLIENT); "accepted" = emit()
            returned, "delivered" = close() returned, i.e. Kafka acknowledged every line with
            acks=all. Sent to a throw-away topic so the index is not flooded; the topic is
            deleted afterwards.
baseline:   a bare send()/produce() loop of each client library with the same producer
            settings and message size, in the same run: the library's ceiling on this machine.
latency:    lines emitted at --rate lines/s to tracectl.logs; the real shipper indexes them;
            this process polls the index (no forced refresh: "searchable" means after the
            index's own 1 s refresh) every --poll-ms and records when each line first shows.
            Latency = first seen - emitted, same clock. Polling adds up to --poll-ms.

shippers:   (--shippers) bench/logs_shipper.py: Kafka -> index lines/s and line -> searchable
            latency of rsyslog into OpenSearch and into Elasticsearch, each with its own
            shipper process.

Prints one JSON document with the figures, the targets, the machine and the command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from opensearchpy import OpenSearch

from bench.machine import load, machine
from bench.stats import percentile
from controller.config import Settings
from controller.logs import kafka_client_confluent, kafka_client_python
from controller.logs.kafka_sink import EventEncoder, KafkaLogSink, context_of
from controller.logs.kafka_transport import KAFKA_CLIENTS, ensure_topic
from controller.ports import LogLine

REPO = Path(__file__).resolve().parents[1]
TARGET_LINES_PER_S = 50_000
TARGET_P95_S = 2.0


def drop_topic(bootstrap: str, topic: str) -> None:
    """A run's private topic, deleted once measured."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def service_env(name: str) -> dict[str, str]:
    out = subprocess.run(
        [str(REPO / "deploy" / "local" / name), "env"], capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def line(task_id: str, seq: int, width: int) -> LogLine:
    text = f"step {seq} loss=0.{seq % 9973:04d} " + "x" * max(0, width - 24)
    return LogLine("bench-run", task_id, 1, seq, "stdout", text, datetime.now(UTC))


def throughput(bootstrap: str, lines: int, width: int, client: str) -> dict[str, Any]:
    topic = f"tracectl.bench.{uuid.uuid4().hex[:8]}"
    task_id = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-") as home:
        settings = Settings(
            home=Path(home), log_sink=f"kafka://{bootstrap}/{topic}", kafka_client=client
        )
        sink = KafkaLogSink(settings, {"run_id": "bench-run", "task_id": task_id, "attempt": "1"})
        sink.emit(line(task_id, 0, width))  # connect + create the topic outside the timing
        sink.flush()
        batch = [line(task_id, seq, width) for seq in range(1, lines + 1)]
        start, cpu_start = time.perf_counter(), time.process_time()
        for item in batch:
            sink.emit(item)
        accepted = time.perf_counter() - start
        sink.close()
        delivered = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        stats = sink.stats()
    drop_topic(bootstrap, topic)
    return {
        "client": client,
        "lines": lines,
        "message_bytes": width,
        "accepted_s": round(accepted, 3),
        "delivered_s": round(delivered, 3),
        "accepted_lines_per_s": round(lines / accepted),
        "delivered_lines_per_s": round(lines / delivered),
        "sent": stats["sent"] - 1,
        "dropped": stats["dropped"],
        "cpu_us_per_line": round(cpu / lines * 1e6, 2),
    }


def raw_kafka_python(bootstrap: str, topic: str, lines: int, payload: bytes) -> float:
    """Seconds until every record is acknowledged."""
    producer = KafkaProducer(**kafka_client_python.producer_config(bootstrap, "tracectl-bench"))
    producer.send(topic, key=b"k", value=payload).get(timeout=30)
    start = time.perf_counter()
    for _ in range(lines):
        producer.send(topic, key=b"k", value=payload)
    producer.flush(timeout=120)
    elapsed = time.perf_counter() - start
    producer.close()
    return elapsed


def raw_confluent(bootstrap: str, topic: str, lines: int, payload: bytes) -> float:
    producer = Producer(kafka_client_confluent.producer_config(bootstrap, "tracectl-bench"))
    failed: list[object] = []

    def on_delivery(error: object, _message: object) -> None:  # what a real caller must check
        if error is not None:
            failed.append(error)

    producer.produce(topic, payload, b"k", on_delivery=on_delivery)
    producer.flush(30)
    start = time.perf_counter()
    for _ in range(lines):
        try:
            producer.produce(topic, payload, b"k", on_delivery=on_delivery)
        except BufferError:  # librdkafka's queue (100,000 records) is full: let it drain
            producer.poll(0.05)
            producer.produce(topic, payload, b"k", on_delivery=on_delivery)
    left = producer.flush(120)
    elapsed = time.perf_counter() - start
    assert not failed and not left, f"bare confluent loop: {len(failed)} failed, {left} left"
    return elapsed


def raw_producer(bootstrap: str, lines: int, width: int, client: str) -> dict[str, Any]:
    """Baseline: a bare send loop of CLIENT, same producer settings, no spool, no ECS."""
    topic = f"tracectl.bench.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    payload = json.dumps({"message": "x" * width}).encode()
    loop = raw_kafka_python if client == "kafka-python" else raw_confluent
    cpu_start = time.process_time()
    elapsed = loop(bootstrap, topic, lines, payload)
    cpu = time.process_time() - cpu_start  # includes the connect and warm-up record
    drop_topic(bootstrap, topic)
    return {
        "client": client,
        "lines": lines,
        "delivered_s": round(elapsed, 3),
        "delivered_lines_per_s": round(lines / elapsed),
        "cpu_us_per_line": round(cpu / lines * 1e6, 2),
    }


RSYSLOG_CONF = """
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imfile")
module(load="omkafka")
template(name="raw" type="string" string="%msg%")
ruleset(name="tokafka") {{
  action(type="omkafka" broker=["{bootstrap}"] topic="{topic}" key="{key}" template="raw"
         confParam=["compression.codec=gzip", "queue.buffering.max.ms=5"]
         topicConfParam=["request.required.acks=-1"])
}}
input(type="imfile" file="{file}" tag="tracectl" ruleset="tokafka" freshStartTail="off")
"""


def rsyslog_tail(bootstrap: str, lines: int, width: int) -> dict[str, Any]:
    """A file-tailing shipper (rsyslog imfile -> omkafka, librdkafka) over the same ECS lines,
    already written to a file: the time from its start until Kafka holds every line."""
    rsyslogd = shutil.which("rsyslogd")
    if rsyslogd is None:
        return {"skipped": "rsyslogd not installed (apt-get install rsyslog rsyslog-kafka)"}
    topic = f"tracectl.bench.{uuid.uuid4().hex[:8]}"
    task_id = f"tail-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    encoder = EventEncoder(
        {"run_id": "bench-run", "task_id": task_id, "attempt": "1"}, context_of({})
    )
    with tempfile.TemporaryDirectory(prefix="tracectl-rsyslog-") as tmp:
        work = Path(tmp)
        source = work / "task.jsonl"
        with source.open("wb") as handle:
            for seq in range(1, lines + 1):
                handle.write(encoder.encode(line(task_id, seq, width)) + b"\n")
        conf = work / "rsyslog.conf"
        conf.write_text(
            RSYSLOG_CONF.format(
                work=work, bootstrap=bootstrap, topic=topic, key=task_id, file=source
            )
        )
        probe = KafkaConsumer(bootstrap_servers=bootstrap)
        parts = [TopicPartition(topic, p) for p in range(3)]
        start = time.perf_counter()
        daemon = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(work / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            total = 0
            deadline = start + 300
            while total < lines and time.perf_counter() < deadline and daemon.poll() is None:
                time.sleep(0.05)
                total = sum(probe.end_offsets(parts).values())
            elapsed = time.perf_counter() - start
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            probe.close()
    drop_topic(bootstrap, topic)
    return {
        "lines": lines,
        "delivered": total,
        "delivered_s": round(elapsed, 3),
        "delivered_lines_per_s": round(total / elapsed),
        "note": "pre-written file; includes rsyslogd start-up; the writer's cost is the "
        "task's file record, paid anyway",
    }


def latency(
    bootstrap: str,
    search_url: str,
    lines: int,
    rate: float,
    width: int,
    poll_ms: int,
    kafka_client: str,
) -> dict[str, Any]:
    task_id = f"latency-{uuid.uuid4().hex[:8]}"
    client = OpenSearch(hosts=[search_url], timeout=30)
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-") as home:
        settings = Settings(
            home=Path(home), log_sink=f"kafka://{bootstrap}", kafka_client=kafka_client
        )
        sink = KafkaLogSink(settings, {"run_id": "bench-run", "task_id": task_id, "attempt": "1"})
        emitted: dict[int, float] = {}
        seen: dict[int, float] = {}
        next_poll = time.perf_counter()
        start = time.perf_counter()
        seq = 0
        deadline = start + lines / rate + 60
        while len(seen) < lines and time.perf_counter() < deadline:
            now = time.perf_counter()
            while seq < lines and now - start >= seq / rate:
                seq += 1
                emitted[seq] = time.perf_counter()
                sink.emit(line(task_id, seq, width))
            if now >= next_poll:
                body = {
                    "query": {"term": {"labels.task_id": task_id}},
                    "size": 10000,
                    "_source": ["event.sequence"],
                }
                hits = client.search(index="logs-tracectl-*", body=body)["hits"]["hits"]
                stamp = time.perf_counter()
                for hit in hits:
                    seen.setdefault(int(hit["_source"]["event"]["sequence"]), stamp)
                next_poll = stamp + poll_ms / 1000
            time.sleep(0.001)
        sink.close()
    delays = [seen[s] - emitted[s] for s in seen if s in emitted]
    return {
        "client": kafka_client,
        "lines": lines,
        "rate_lines_per_s": rate,
        "poll_ms": poll_ms,
        "searchable": len(delays),
        "lost": lines - len(delays),
        "p50_s": round(percentile(delays, 0.50), 3) if delays else None,
        "p95_s": round(percentile(delays, 0.95), 3) if delays else None,
        "p99_s": round(percentile(delays, 0.99), 3) if delays else None,
        "max_s": round(max(delays), 3) if delays else None,
        "mean_s": round(statistics.fmean(delays), 3) if delays else None,
    }


def shippers() -> dict[str, Any]:
    """bench/logs_shipper.py's figures, run as its own process (its own command line)."""
    command = [sys.executable, str(REPO / "bench" / "logs_shipper.py")]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return dict(json.loads(out.stdout)["shippers"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=100, help="message bytes")
    parser.add_argument(
        "--clients", default=",".join(KAFKA_CLIENTS), help="Kafka clients to time, comma-separated"
    )
    parser.add_argument("--latency-lines", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="latency run, lines/s")
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument("--latency-client", default="kafka-python", choices=KAFKA_CLIENTS)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--rsyslog",
        action="store_true",
        help="also time rsyslog imfile -> omkafka tailing the same lines",
    )
    parser.add_argument(
        "--shippers", action="store_true", help="also the shippers' figures (bench/logs_shipper.py)"
    )
    args = parser.parse_args()
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(clients) - set(KAFKA_CLIENTS)
    if unknown:
        parser.error(f"unknown --clients {sorted(unknown)}: expected {KAFKA_CLIENTS}")
    load_at_start = load()
    bootstrap = service_env("kafka")["TRACECTL_KAFKA_BOOTSTRAP"]
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "targets": {"lines_per_s": TARGET_LINES_PER_S, "p95_s": TARGET_P95_S},
        "throughput": {},
        "baseline_raw": {},
    }
    for client in clients:
        sink = result["throughput"][client] = throughput(bootstrap, args.lines, args.width, client)
        raw = result["baseline_raw"][client] = raw_producer(
            bootstrap, args.lines, args.width, client
        )
        sink["ratio_to_raw"] = round(
            sink["delivered_lines_per_s"] / raw["delivered_lines_per_s"], 2
        )
    if args.rsyslog:
        result["file_tailing_rsyslog"] = rsyslog_tail(bootstrap, args.lines, args.width)
    if not args.skip_latency:
        search_url = service_env("opensearch")["TRACECTL_OPENSEARCH_URL"]
        result["latency"] = latency(
            bootstrap,
            search_url,
            args.latency_lines,
            args.rate,
            args.width,
            args.poll_ms,
            args.latency_client,
        )
    if args.shippers:
        result["shippers"] = shippers()
    result["machine"] = machine(load_at_start)
    result["met"] = {
        "lines_per_s": {
            client: figures["delivered_lines_per_s"] >= TARGET_LINES_PER_S
            for client, figures in result["throughput"].items()
        },
        # None: not measured (--skip-latency)
        "p95_s": (
            None
            if "latency" not in result
            else result["latency"].get("p95_s") is not None
            and result["latency"]["p95_s"] < TARGET_P95_S
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
