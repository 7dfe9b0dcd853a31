import pytest

from services.common.errors import ConfigurationError
from services.common.settings import load_settings


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXPILOT_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("MIXPILOT_TARGET_LUFS", "-16")
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092" and s.target_lufs == -16.0


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MIXPILOT_BLOB_URL", "ftp://x"),
        ("MIXPILOT_GATEWAY_PORT", "99999"),
        ("MIXPILOT_DATABASE_URL", "mysql://x"),
    ],
)
def test_bad_values_fail_start_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert var in str(err.value) and "\n" not in str(err.value)


def test_distributed_roles_need_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXPILOT_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(ConfigurationError, match="MIXPILOT_KAFKA_BOOTSTRAP"):
        load_settings().require_distributed("analyzer")
    monkeypatch.setenv("MIXPILOT_KAFKA_BOOTSTRAP", "h:1")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        load_settings().require_distributed("gateway")


def test_predictor_concurrency_defaults_to_batching_on_triton_only() -> None:
    assert load_settings().predictor_jobs_at_once == 1
    assert load_settings(triton_url="triton:8001").predictor_jobs_at_once == 8
    assert load_settings(triton_url="t:1", predictor_concurrency=3).predictor_jobs_at_once == 3


def test_serve_needs_no_key_only_where_nobody_else_can_connect() -> None:
    assert load_settings().one_machine_auth() == "none"  # default host 127.0.0.1
    assert load_settings(host="::1").one_machine_auth() == "none"
    assert load_settings(host="0.0.0.0").one_machine_auth() == "api_key"
    assert load_settings(host="0.0.0.0", auth="none").one_machine_auth() == "none"
    assert load_settings(auth="api_key").one_machine_auth() == "api_key"
