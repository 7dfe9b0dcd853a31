from pathlib import Path

from services.common.params import table_markdown
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_parameter_table_in_docs_is_current() -> None:
    assert table_markdown() in (ROOT / "docs" / "parameters.md").read_text()


def test_every_setting_is_documented_in_operations() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    missing = [f for f in Settings.model_fields if f"MIXPILOT_{f.upper()}" not in text]
    assert missing == []
