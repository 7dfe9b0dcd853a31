#!/usr/bin/env bash
# Quick start 1: install, then mix the bundled example song in this process (no servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/mixpilot mix examples/example.flac -o out/example
