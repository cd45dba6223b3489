#!/usr/bin/env bash
# The GPU check in one command (tests/gpu/check.py; docs/training.md says what the report means):
#
#   timeout 540 tests/gpu/check.sh out/gpu-check          # on a CUDA machine: under 8 minutes
#   tests/gpu/check.sh out/gpu-check --cpu-rehearsal      # the same code path on the CPU, tiny sizes
#
# Runs from any folder, with the project on PYTHONPATH (no install needed); $PYTHON, else .venv's python,
# else python3. Installs nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m tests.gpu.check "$@"
