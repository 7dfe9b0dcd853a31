"""Fixtures for integration tests: real servers started once per session, on loopback only.

Every test under ``tests/integration`` is marked ``integration`` (``pytest -m "not integration"``
runs the fast suite alone). The fixtures fail, never skip, when a server binary is missing: CI
installs them (see ``tests/infra.py`` for what to install).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import TritonServer, start_or_fail, start_postgres, start_tansu, start_triton

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory as ``integration``."""
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Kafka-protocol broker (Tansu, memory storage) as ``"127.0.0.1:PORT"``.

    It answers metadata requests when the fixture returns; it is killed at the end of the
    session. Tests share it, so each test uses its own topic and group names.
    """
    broker = start_or_fail(
        "the Kafka broker", lambda: start_tansu(tmp_path_factory.mktemp("tansu"))
    )
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database as ``"postgresql://postgres@127.0.0.1:PORT/mixpilot"``.

    Trust authentication on loopback (no password). The cluster is stopped and its files are
    removed at the end of the session.
    """
    cluster = start_or_fail("PostgreSQL", start_postgres)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model repository of the shipped weights (``mixpilot triton-repo``, CPU, batching)."""
    from services.predictor.triton_repository import write_repository

    return write_repository(tmp_path_factory.mktemp("triton") / "repository")


@pytest.fixture(scope="session")
def triton(
    triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A real Triton server (the nvidia-pytriton wheel's ``tritonserver``) serving the three
    models on loopback, ready when the fixture returns; stopped at the end of the session."""
    server = start_or_fail(
        "Triton", lambda: start_triton(tmp_path_factory.mktemp("tritonserver"), triton_repository)
    )
    try:
        yield server
    finally:
        server.stop()
