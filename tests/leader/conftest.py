"""Two replicas of one store, on SQLite and on the real PostgreSQL (tests/leader)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.leases import scratch_postgres
from controller.store.database import Database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracectl.db'}"
        return
    postgres = request.getfixturevalue("postgres")
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        yield url


@pytest.fixture
def replicas(store_url: str) -> Iterator[tuple[Database, Database]]:
    first, second = Database(store_url), Database(store_url)
    first.migrate()  # migration 0017 makes the leader row
    yield first, second
    first.dispose()
    second.dispose()
