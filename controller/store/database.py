"""Engine set-up. SQLite gets WAL and BEGIN IMMEDIATE writes; PostgreSQL runs as is."""

from __future__ import annotations

import copy
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from controller.process_locks import ALEMBIC

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x7472_6163  # "trac": the advisory lock key of schema migrations


def sqlite_journal(connection: Any, *, busy_ok: bool = False) -> None:
    """The store's journal on a DB-API SQLite CONNECTION: WAL with synchronous=NORMAL, durable
    across a crash of the process at one disk sync per checkpoint rather than several a commit.
    BUSY_OK: a connection that finds another one switching the file to WAL goes on as is."""
    with suppress(sqlite3.OperationalError) if busy_ok else nullcontext():
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is switched off so that we choose the
        # BEGIN kind: IMMEDIATE takes the write lock up front, so two writers never both
        # read a stale row and then race to write it.
        dbapi_conn.isolation_level = None
        sqlite_journal(dbapi_conn)
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Two session factories over one database: `write()` for changes, `read()` for views."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
        else:
            self.write_engine = create_engine(url, pool_pre_ping=True, pool_size=10)
            self.read_engine = self.write_engine
        from controller.audit.chain import install as chain_audit_and_lineage

        chain_audit_and_lineage()
        # SQLite takes one writer; its busy handler makes the others poll with growing sleeps,
        # which under a burst of writers starves some of them for seconds. In this process
        # they queue on a lock instead and start the moment the previous writer commits.
        self._write_turn: AbstractContextManager[Any] = (
            threading.RLock() if self.is_sqlite else nullcontext()
        )
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = sessionmaker(self.read_engine, expire_on_commit=False)
        self._guard: Callable[[Session], None] | None = None

    def guarded(self, check: Callable[[Session], None]) -> Database:
        """This database (same engines), whose every write runs CHECK first, in its own
        transaction: a check that raises rolls the write back (the leader's fencing)."""
        twin = copy.copy(self)
        twin._guard = check
        return twin

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write_turn, self._writer() as session, session.begin():
            if self._guard is not None:
                self._guard(session)
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url)
        with ALEMBIC, self._migration_lock(), self.write_engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """One replica migrates at a time (they start together); the others then find the
        schema at head. On SQLite, BEGIN IMMEDIATE already serialises them."""
        if self.is_sqlite:
            yield
            return
        with self.write_engine.connect() as lock:
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            lock.commit()  # a session lock: it outlives the transaction, held to unlock
            try:
                yield
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                lock.commit()

    def dispose(self) -> None:
        self.write_engine.dispose()
        self.read_engine.dispose()
