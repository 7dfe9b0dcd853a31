#!/usr/bin/env bash
# Regenerates the Python code for proto/mixpilot/v1/*.proto into services/common/generated/.
# Pinned generator: grpcio-tools and mypy-protobuf versions come from pyproject's [test] extra.
# The generated package is importable as mixpilot.v1 (see [tool.setuptools.package-dir]).
# Usage: scripts/proto_codegen.sh [OUTDIR]   (default: services/common/generated)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/services/common/generated}
py=${PYTHON:-python}
rm -rf "$out/mixpilot"
mkdir -p "$out"
"$py" -m grpc_tools.protoc \
  --proto_path="$root/proto" \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --mypy_out="$out" \
  "$root"/proto/mixpilot/v1/*.proto
touch "$out/mixpilot/__init__.py" "$out/mixpilot/v1/__init__.py"
