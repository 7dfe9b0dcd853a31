"""Bucket imports on PostgreSQL: the importer's claims (a stale one taken over, a live one left
alone, an item never two jobs) with the job store the distributed gateway uses, in a database
of its own."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa

from tests.unit.test_gateway_imports import check_stale_claims


def test_stale_claims_on_postgresql(postgres_url: str, s3_endpoint: str, tmp_path: Path) -> None:
    name = f"imports_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    check_stale_claims(
        s3_endpoint, tmp_path, database_url=postgres_url.rsplit("/", 1)[0] + "/" + name
    )
