#!/usr/bin/env bash
# The one command that runs every test: installs the test dependencies,
# makes the whisper reference files, builds and runs the unit, property,
# end-to-end, parity and oracle tests (and the benches once, in test mode),
# builds, inspects and installs the Debian package
# (scripts/package-test.sh), and runs every fuzz target for 20 s when a
# nightly toolchain is there (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
scripts/whisper-fixtures.sh
cargo build --locked --all-targets
cargo test --locked --all-targets
scripts/package-test.sh
scripts/fuzz.sh 30
