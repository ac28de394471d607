#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for $1 seconds each
# (default 30) from the project's seed corpus, when a nightly toolchain is
# there; installs cargo-fuzz from the registry if it is missing. A crash
# fails the run and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain; fuzzing skipped (install one with rustup to fuzz)"
  exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
fuzz/seeds.sh
cd fuzz
cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | grep -E "^Done|DONE|SUMMARY|panicked|ERROR" || true
  if [ -n "$(find "artifacts/$target" \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) 2>/dev/null)" ]; then
    echo "fuzz: $target crashed; inputs in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
