"""The ECS event of a log line: fields, levels, and the fast encoder's equivalence."""

from __future__ import annotations

import json
import re
import string
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from controller.logs.kafka_sink import EventEncoder, context_of, event_of, level_of
from controller.ports import LogLine

LABELS = {
    "run_id": "run_1",
    "task_id": "task_1",
    "attempt": "2",
    "dag_id": "dag",
    "airflow_run_id": "manual__1",
    "pipeline": "p",
    "team": "ml",
}


@given(
    message=st.text(),
    stream=st.sampled_from(["stdout", "stderr", "system"]),
    seq=st.integers(1, 10**9),
    task_id=st.text(min_size=1, max_size=30),
)
def test_fast_encoder_gives_the_same_json_as_the_event(
    message: str, stream: str, seq: int, task_id: str
) -> None:
    labels = {**LABELS, "task_id": task_id}
    line = LogLine("run_1", task_id, 2, seq, stream, message, datetime.now(UTC))
    context = context_of({**labels, "namespace": "ns", "pod_name": "pod-1"})
    encoded = EventEncoder(labels, context).encode(line)
    assert json.loads(encoded) == event_of(line, labels, context)


def test_event_fields() -> None:
    line = LogLine(
        "run_1",
        "task_1",
        2,
        7,
        "stderr",
        "Traceback (most recent call last):",
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    event = event_of(line, LABELS, context_of({**LABELS, "container_id": "c1"}))
    assert event["event"] == {
        "id": "task_1:2:7",
        "sequence": 7,
        "dataset": "tracectl.task",
        "kind": "event",
    }
    assert event["labels"]["stream"] == "stderr" and event["labels"]["attempt"] == "2"
    assert event["log"]["level"] == "error"
    assert event["container"] == {"id": "c1"}
    assert event["@timestamp"] == "2026-01-01T00:00:00+00:00"


def test_levels() -> None:
    assert level_of("stdout", "2026-01-01 12:00:00 WARNING disk almost full") == "warn"
    assert level_of("stderr", "INFO started") == "info"
    assert level_of("stderr", '  File "x.py", line 3') == "error"
    assert level_of("stdout", "all good") == "info"
    assert level_of("stdout", "x" * 70 + " ERROR late in the line") == "info"


_WORDS = [
    "error",
    "Warning",
    "WARN",
    "info",
    "DEBUG",
    "trace",
    "Critical",
    "FATAL",
    "errors",
    "INFOS",
    "xinfo",
]
_REFERENCE = re.compile(r"\b(CRITICAL|FATAL|ERROR|WARNING|WARN|INFO|DEBUG|TRACE)\b", re.IGNORECASE)
_NAMES = {
    "critical": "critical",
    "fatal": "critical",
    "error": "error",
    "warning": "warn",
    "warn": "warn",
    "info": "info",
    "debug": "debug",
    "trace": "trace",
}


@given(
    parts=st.lists(
        st.one_of(st.sampled_from(_WORDS), st.text(string.printable, max_size=12)), max_size=12
    ),
    stream=st.sampled_from(["stdout", "stderr", "system"]),
)
def test_level_is_the_first_level_word_in_the_head(parts: list[str], stream: str) -> None:
    """The fast path (upper-case + substring pre-test) classifies as a plain case-insensitive
    search of the first 64 characters would."""
    message = " ".join(parts)
    match = _REFERENCE.search(message[:64])
    expected = (
        _NAMES[match.group(1).lower()] if match else ("error" if stream == "stderr" else "info")
    )
    assert level_of(stream, message) == expected


def test_a_kubernetes_attempt_names_its_namespace_and_job_in_orchestrator_fields() -> None:
    labels = {**LABELS, "namespace": "tasks", "object_kind": "job", "object_name": "t-1-a2"}
    assert context_of(labels)["orchestrator"] == {
        "type": "kubernetes",
        "namespace": "tasks",
        "resource": {"type": "job", "name": "t-1-a2"},
    }
    with_pod = context_of({**labels, "pod_name": "t-1-a2-xyz"})
    assert with_pod["orchestrator"]["resource"] == {"type": "pod", "name": "t-1-a2-xyz"}
