#!/usr/bin/env bash
# Installs MixPilot on a fresh Debian 12 machine into ./.venv.
#   scripts/install.sh          runtime only
#   scripts/install.sh --test   plus what the test suite needs (PostgreSQL server, test extras)
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_pkgs=()
# Debian's interpreter (Triton's Python backend links libpython3.11 from it; see docs/operations).
[ -x /usr/bin/python3.11 ] || apt_pkgs+=(python3.11)
/usr/bin/python3.11 -c "import venv, ensurepip" 2>/dev/null || apt_pkgs+=(python3.11-venv)
# The song generator (services/predictor/songgen) renders MIDI with the fluidsynth program and a
# General MIDI soundfont (training and test audio only; see docs/songgen.md).
command -v fluidsynth >/dev/null 2>&1 || apt_pkgs+=(fluidsynth)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || apt_pkgs+=(timgm6mb-soundfont)
if [ "$want_test" = 1 ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_pkgs+=(postgresql)
  # The web UI's browser tests drive Debian's Chromium with Playwright (never `playwright
  # install`: it downloads a browser).
  [ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  echo "== apt-get install ${apt_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
# The Debian postgresql package starts a cluster; the tests run their own throwaway clusters.

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  /usr/bin/python3.11 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24" >/dev/null
extra=""
[ "$want_test" = 1 ] && extra="[test]"
echo "== pip install -e .${extra}"
.venv/bin/python -m pip install -q -e ".${extra}"
# Compile librosa's cached numba kernels once, in one process, before anything runs analyses in
# parallel: two processes compiling its beat-tracking gufuncs at the same moment can write cache
# files that disagree, and every later process that loads them segfaults (numba issue 10128).
echo "== warming the analyzer's numba cache"
.venv/bin/python -c "from services.analyzer.analysis import warm_up; warm_up()"
