#!/usr/bin/env bash
# Builds every fuzz target and runs each briefly from seed corpora made from the vectors.
# FUZZ_SECONDS (default 60) sets the time per target.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
python3 seed_corpus.py
cargo fuzz build -O
seconds="${FUZZ_SECONDS:-60}"
# Every target of fuzz/Cargo.toml: wire_decode, chain_apply, packet_decrypt, broadcast_receive,
# chain_histories and session (one Session under arbitrary responses, updates and timeouts).
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "fuzzing $target for ${seconds}s"
  cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" || true
  # A crash makes cargo fuzz exit non-zero and leaves an artifact: fail CI then.
  if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/leak-* >/dev/null 2>&1; then
    echo "fuzz target $target found a failure: $(ls artifacts/$target)"
    exit 1
  fi
done
