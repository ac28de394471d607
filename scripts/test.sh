#!/usr/bin/env bash
# The one command that runs every test: installs the test dependencies,
# then builds and runs the unit, property, end-to-end and parity tests, and
# checks that the benches compile, then builds, inspects and installs the
# Debian package (scripts/package-test.sh
scripts/fuzz.sh 20).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
scripts/whisper-fixtures.sh
cargo build --locked --all-targets
cargo test --locked --all-targets
scripts/package-test.sh
scripts/fuzz.sh 20
