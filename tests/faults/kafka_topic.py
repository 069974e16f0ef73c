"""Read back what reached a Kafka topic since a moment, for order checks."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from tests.waiting import poll_until


def sequences_since(
    bootstrap: str, topic: str, since_ms: int, keys: set[str], timeout_s: float = 120
) -> dict[str, list[int]]:
    """``event.sequence`` of every record keyed by one of KEYS written at or after SINCE_MS,
    per key, in the order Kafka holds them (one key lives in one partition)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        starts = consumer.offsets_for_times({tp: since_ms for tp in parts})
        todo = {}
        for tp in parts:
            found = starts.get(tp)
            if found is not None and found.offset < ends[tp]:
                consumer.seek(tp, found.offset)
                todo[tp] = ends[tp]
            else:
                consumer.pause(tp)
        out: dict[str, list[int]] = {key: [] for key in keys}

        def read() -> dict[Any, int]:
            """One poll's records into OUT; the partitions still to read to their end."""
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                for record in records:
                    key = (record.key or b"").decode()
                    if key in out and record.offset < todo.get(tp, 0):
                        out[key].append(int(json.loads(record.value)["event"]["sequence"]))
            for tp in list(todo):
                if consumer.position(tp) >= todo[tp]:
                    consumer.pause(tp)
                    del todo[tp]
            return todo

        if todo:
            poll_until(read, lambda left: not left, timeout_s, every=0)
        assert not todo, f"could not read {topic} to its end in {timeout_s} s: {todo}"
        return out
    finally:
        consumer.close()
