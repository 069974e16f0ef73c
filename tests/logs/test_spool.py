"""The spool on its own: order, bound, segment rotation, resume after a crash."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import Settings
from controller.logs.kafka_sink import KafkaLogSink
from controller.logs.spool import Spool
from controller.ports import LogLine


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=200)
    for i in range(100):
        assert spool.append(b"k", f"value {i}".encode())
    assert len(list((tmp_path / "s").glob("*.seg"))) > 5
    got = spool.read(30) + spool.read(1000)
    assert [v for _, v in got] == [f"value {i}".encode() for i in range(100)]
    spool.ack()
    assert spool.empty
    assert len(list((tmp_path / "s").glob("*.seg"))) == 1  # only the one being written
    spool.close()
    assert not (tmp_path / "s").exists()


def test_rewind_reads_the_same_records_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=1 << 20)
    for i in range(10):
        spool.append(b"k", str(i).encode())
    first = spool.read(4)
    spool.rewind()
    assert spool.read(4) == first
    spool.ack()
    spool.append(b"k", b"10")
    assert [v for _, v in spool.read(100)] == [str(i).encode() for i in range(4, 11)]


def test_bound_refuses_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=100)
    accepted = [spool.append(b"key", b"x" * 20) for _ in range(10)]
    assert accepted[:4] == [True] * 4 and not any(accepted[4:])
    assert spool.dropped == 6 and spool.pending_bytes <= 100
    spool.read(2)
    spool.ack()  # draining makes room again
    assert spool.append(b"key", b"x" * 20)


def test_a_new_spool_resumes_after_the_last_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=64)
    for i in range(20):
        spool.append(b"k", f"r{i}".encode())
    spool.read(7)
    spool.ack()
    spool.read(5)  # read, never acknowledged: the process dies here
    spool.close(remove_if_empty=False)
    again = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=64)
    assert [v for _, v in again.read(100)] == [f"r{i}".encode() for i in range(7, 20)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["append", "read", "ack", "rewind"]), st.integers(1, 9)),
        max_size=60,
    )
)
def test_acknowledged_records_form_the_written_prefix(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    folder = tmp_path_factory.mktemp("spool")
    spool = Spool(folder, max_bytes=1 << 20, segment_bytes=50)
    written: list[bytes] = []
    delivered: list[bytes] = []
    in_hand: list[bytes] = []
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                value = str(len(written)).encode()
                spool.append(b"k", value)
                written.append(value)
        elif op == "read":
            in_hand += [v for _, v in spool.read(n)]
        elif op == "ack":
            delivered += in_hand
            in_hand = []
            spool.ack()
        else:
            in_hand = []
            spool.rewind()
    assert delivered == written[: len(delivered)]
    spool.rewind()
    assert [v for _, v in spool.read(10**6)] == written[len(delivered) :]
    spool.close(remove_if_empty=False)


@pytest.mark.parametrize("segment_bytes", [4096, 4 << 20])
def test_reader_gets_whole_records_while_another_thread_appends(
    tmp_path: Path, segment_bytes: int
) -> None:
    """The sender reads and acks without the lock while the task's thread keeps appending and
    rotating segments: every record comes out once, whole, in order, and the byte count the
    bound relies on ends at zero."""
    spool = Spool(tmp_path / "s", max_bytes=1 << 30, segment_bytes=segment_bytes)
    expected = [f"value {i} ".encode() + b"x" * (i * 37 % 1500) for i in range(20000)]

    def write() -> None:
        for value in expected:
            assert spool.append(b"k", value)

    writer = threading.Thread(target=write)
    writer.start()
    got: list[bytes] = []
    while len(got) < len(expected) and (writer.is_alive() or not spool.empty):
        got += [value for _, value in spool.read(333)]
        spool.ack()
    writer.join()
    got += [value for _, value in spool.read(10**6)]
    assert got == expected
    spool.ack()
    assert spool.empty and spool.pending_bytes == 0


def _line(seq: int) -> LogLine:
    return LogLine("r", "full", 1, seq, "stdout", f"line {seq}", datetime.now(UTC))


def test_full_sink_spool_drops_and_counts(tmp_path: Path) -> None:
    """No broker at all (port 1): the spool fills to its bound, then refuses, and says so."""
    settings_ = Settings(home=tmp_path / "home", log_sink="kafka://127.0.0.1:1/unused")
    sink = KafkaLogSink(
        settings_, {"run_id": "r", "task_id": "full", "attempt": "1"}, spool_max_bytes=20_000
    )
    for seq in range(1, 201):
        sink.emit(_line(seq))
    stats = sink.stats()
    assert stats["dropped"] > 0 and 0 < stats["spooled_bytes"] <= 20_000
    assert stats["sent"] == 0
    assert not sink.producer.close(0.5)  # undelivered: close says so, the spool stays
    assert any((tmp_path / "home" / "spool" / "logs" / "r" / "full" / "1").glob("*.seg"))
