#!/usr/bin/env bash
# The whole test suite, with everything it needs installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export QT_QPA_PLATFORM=offscreen
python3 -m pytest -q "$@"
