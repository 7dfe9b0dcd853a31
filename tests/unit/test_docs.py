from pathlib import Path

from services.common.params import table_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_parameter_table_in_docs_is_current() -> None:
    assert table_markdown() in (ROOT / "docs" / "parameters.md").read_text()
