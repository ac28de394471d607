#!/usr/bin/env bash
# Makes the whisper reference files the byte-compatibility tests compare
# against: tests/fixtures/whisper_reference.py replayed with Python whisper
# 1.1.10 (installed by scripts/install-test-deps.sh) into
# target/whisper-fixtures/ (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/whisper-fixtures}"
python=.test-deps/venv/bin/python
[ -x "$python" ] || { echo "run scripts/install-test-deps.sh first" >&2; exit 1; }
# CPython 3.12 changed sum() over floats; the reference is <= 3.11.
"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] <= (3, 11) else 1)' || {
  echo "whisper fixtures need CPython <= 3.11 (found $("$python" --version))" >&2
  exit 1
}
rm -rf "$out"
"$python" tests/fixtures/whisper_reference.py "$out"
