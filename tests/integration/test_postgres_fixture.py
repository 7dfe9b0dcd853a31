"""The ``postgres_url`` fixture gives a real, empty, writable PostgreSQL database."""

from __future__ import annotations

import uuid

import sqlalchemy as sa


def test_database_accepts_connections_and_round_trips_a_transaction(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres_url.endswith("/mixpilot")
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    table = f"fixture_check_{uuid.uuid4().hex[:8]}"
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "mixpilot"
            assert int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 120000

        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'committed')"))

        # A rolled-back transaction leaves nothing behind.
        with engine.connect() as conn:
            with conn.begin() as tx:
                conn.execute(sa.text(f"INSERT INTO {table} VALUES (2, 'rolled back')"))
                tx.rollback()

        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT id, name FROM {table} ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "committed")]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
