#!/usr/bin/env bash
# The whole test suite, with everything it needs installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
# HTDemucs (tests/test_htdemucs.py runs the real model): its weights are for personal and research use
# only; running this test suite is such a use, so the licence is accepted here for testing. They go to a
# test-only folder, not the user's model folder, so the user's own defaults stay as the user chose.
export STEMSTREAM_TEST_MODELS="${STEMSTREAM_TEST_MODELS:-$HOME/.cache/stemstream-test/models}"
STEMSTREAM_MODELS_DIR="$STEMSTREAM_TEST_MODELS" bash scripts/setup.sh test --htdemucs-accept-licence
export QT_QPA_PLATFORM=offscreen
python3 -m pytest -q "$@"
