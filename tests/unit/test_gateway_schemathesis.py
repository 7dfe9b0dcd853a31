"""Schemathesis against the served OpenAPI document: every operation, with generated valid and
invalid input (paths, query, headers, JSON and multipart bodies), as an authenticated tenant of
the real app (`mixpilot serve` wiring); no request may end in a server error (5xx).

The operations are driven through schemathesis' strategies with Hypothesis directly (its pytest
plugin does not load under pytest 9 yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from gateway.accounts import Accounts
from gateway.runtime import build_one_machine
from gateway.store import JobStore
from services.common.settings import load_settings

EXAMPLES = 20


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> int:
    """Run up to EXAMPLES generated requests of ``mode`` on ``operation``; how many ran."""
    count = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])
        count[0] += 1

    try:
        run()
    except Unsatisfiable:  # no input of this mode exists for the operation
        pass
    return count[0]


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    config = load_settings(
        auth="api_key",  # keys even on loopback: the tests use them
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        blob_url=f"file://{tmp_path / 'blobs'}",
        cache_dir=tmp_path / "cache",
    )
    app, stop = build_one_machine(config)
    try:
        key = Accounts(JobStore(config.database_url).engine).create_key("fuzz", plan="label")[0]
        headers = {"Authorization": f"Bearer {key}"}
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15, [op.label for op in operations]
        calls = {
            op.label: sum(_fuzz(op, mode, headers) for mode in GenerationMode) for op in operations
        }
        assert all(n > 0 for n in calls.values()), calls
        assert sum(calls.values()) >= 10 * len(operations), calls
    finally:
        stop()
