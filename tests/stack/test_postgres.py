"""Smoke test of the real PostgreSQL server that deploy/local/postgres runs."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors, sql

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]


def _dsn(env: dict[str, str], db: str = "tracectl") -> str:
    return (
        f"host={env['TRACECTL_POSTGRES_HOST']} port={env['TRACECTL_POSTGRES_PORT']} "
        f"user={env['TRACECTL_POSTGRES_USER']} password={env['TRACECTL_POSTGRES_PASSWORD']} "
        f"dbname={db} connect_timeout=10"
    )


def test_env_url_points_at_loopback(postgres: dict[str, str]) -> None:
    url = postgres["TRACECTL_POSTGRES_URL"]
    assert url.startswith("postgresql+psycopg://")
    assert "@127.0.0.1:" in url
    assert url.endswith("/tracectl")


@pytest.mark.parametrize("db", ["tracectl", "airflow", "mlflow"])
def test_databases_exist_and_are_owned_by_tracectl(postgres: dict[str, str], db: str) -> None:
    with psycopg.connect(_dsn(postgres, db)) as conn:
        owner, version = conn.execute(
            "select pg_get_userbyid(datdba), current_setting('server_version_num')::int "
            "from pg_database where datname = current_database()"
        ).fetchone()
    assert owner == postgres["TRACECTL_POSTGRES_USER"]
    assert version >= 130000


def test_wrong_password_is_rejected(postgres: dict[str, str]) -> None:
    bad = _dsn(postgres).replace(
        f"password={postgres['TRACECTL_POSTGRES_PASSWORD']}", "password=not-the-password"
    )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad)


def test_listens_on_loopback_only(postgres: dict[str, str]) -> None:
    with psycopg.connect(_dsn(postgres)) as conn:
        (listen,) = conn.execute("show listen_addresses").fetchone()
    assert listen == "127.0.0.1"


def test_create_table_and_skip_locked_between_two_connections(postgres: dict[str, str]) -> None:
    table = sql.Identifier(f"skip_locked_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(_dsn(postgres), autocommit=True) as admin:
        admin.execute(
            sql.SQL("create table {} (id int primary key, claimed_by text)").format(table)
        )
        admin.execute(sql.SQL("insert into {} (id) values (1), (2), (3)").format(table))
    claim = sql.SQL(
        "select id from {} where claimed_by is null order by id limit 1 for update skip locked"
    ).format(table)
    try:
        with psycopg.connect(_dsn(postgres)) as first, psycopg.connect(_dsn(postgres)) as second:
            # both connections are inside a transaction (psycopg's default) until commit
            (row_first,) = first.execute(claim).fetchone()
            (row_second,) = second.execute(claim).fetchone()
            assert row_first == 1
            assert row_second == 2, "the second connection must skip the row the first one locked"

            # the locked row really is locked: NOWAIT on it fails instead of blocking
            second.execute("savepoint probe")
            with pytest.raises(errors.LockNotAvailable):
                second.execute(
                    sql.SQL("select id from {} where id = 1 for update nowait").format(table)
                )
            second.execute("rollback to savepoint probe")

            first.execute(
                sql.SQL("update {} set claimed_by = 'first' where id = %s").format(table),
                (row_first,),
            )
            first.commit()
            second.execute(
                sql.SQL("update {} set claimed_by = 'second' where id = %s").format(table),
                (row_second,),
            )
            second.commit()

            # after both commits the next claim gets the only unclaimed row
            (row_next,) = first.execute(claim).fetchone()
            assert row_next == 3
            first.rollback()
        with psycopg.connect(_dsn(postgres)) as check:
            rows = check.execute(
                sql.SQL("select id, claimed_by from {} order by id").format(table)
            ).fetchall()
        assert rows == [(1, "first"), (2, "second"), (3, None)]
    finally:
        with psycopg.connect(_dsn(postgres), autocommit=True) as admin:
            admin.execute(sql.SQL("drop table if exists {}").format(table))
