#!/usr/bin/env bash
# Quick start 2: install what the tests need, then run the whole suite (unit, integration on
# real servers started by fixtures). Exits non-zero if any test fails or if no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test || exit 1
echo "== ruff"
.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check services/common || exit 1
echo "== mypy services/common services/analyzer services/predictor/*.py gateway services/renderer (service side)"
.venv/bin/mypy services/common || exit 1
# The analyzer's own modules; what they import (songgen, renderer) is not checked yet.
.venv/bin/mypy --follow-imports=silent services/analyzer || exit 1
# The predictor's own modules (inference, Triton client/repository/server); not songgen/training.
.venv/bin/mypy --follow-imports=silent services/predictor/*.py || exit 1
.venv/bin/mypy --follow-imports=silent gateway || exit 1
# The renderer's service side (stage, previews, input cache, gRPC); the DSP modules not yet.
.venv/bin/mypy --follow-imports=silent services/renderer/{stage,preview,inputs,server,service}.py || exit 1
echo "== pytest"
.venv/bin/python -m pytest -ra --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
