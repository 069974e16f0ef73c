"""Many controllers race to admit overlapping claims on one store: nothing is double-granted.

8 threads in this process and 4 OS processes, each contender with its own Database object
and LeaseAdmitter, run admission rounds for ~5 s. Grants and releases are stamped inside
their transactions (under the write / admission lock), so an overlap of two exclusive holds
of one unit would show in the intervals; a sampler also reads the live lease table many
times a second (bench/leases.py holds the harness).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.leases import run, scratch_postgres

SECONDS = 5.0


def _assert_clean(result: dict[str, object]) -> None:
    assert result["errors"] == 0, result["error_examples"]
    assert result["double_grants"] == 0, result["double_grant_examples"]
    assert result["tokens_monotonic"] is True
    assert int(result["grants"]) >= 20, result  # type: ignore[call-overload]
    assert int(result["sampler_reads"]) >= 20, result  # type: ignore[call-overload]


@pytest.mark.timeout(240)
def test_sqlite_threads_and_processes_never_double_grant(tmp_path: Path) -> None:
    result = run(
        f"sqlite:///{tmp_path / 'race.db'}",
        contenders=12,
        seconds=SECONDS,
        processes=4,
        threads_in_parent=8,
    )
    assert result["processes"] == 5
    _assert_clean(result)


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgres_threads_and_processes_never_double_grant(postgres: dict[str, str]) -> None:
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        result = run(url, contenders=12, seconds=SECONDS, processes=4, threads_in_parent=8)
    _assert_clean(result)
