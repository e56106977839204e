#!/usr/bin/env bash
# Builds every fuzz target and runs each briefly, starting from the committed, minimized corpus
# (corpus/<target>, grown by long.sh) and the seeds made from the vectors (seeds/<target>).
# FUZZ_SECONDS (default 60) sets the time per target. New finds go to a scratch directory: the
# committed corpus changes only through long.sh.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
. ./args.sh
python3 seed_corpus.py
cargo fuzz build -O
seconds="${FUZZ_SECONDS:-60}"
# Every target of fuzz/Cargo.toml: wire_decode, chain_apply, packet_decrypt, broadcast_receive,
# chain_histories, session (one Session under arbitrary responses, updates and timeouts) and
# api_tl_decode (the API's TL results and functions, with an allocation bound) and frame (the media
# frame layer: H.264 layouts of any shape, frame packets).
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target" "seeds/$target"
  work="$(mktemp -d)"
  echo "fuzzing $target for ${seconds}s from $(ls "corpus/$target" | wc -l) corpus files"
  # shellcheck disable=SC2046
  cargo fuzz run -O "$target" "$work" "corpus/$target" "seeds/$target" -- -max_total_time="$seconds" \
    -print_final_stats=1 $(target_args "$target") 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)|DONE +cov:" || true
  rm -rf "$work"
  # A crash makes cargo fuzz exit non-zero and leaves an artifact: fail CI then.
  if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/leak-* \
    "artifacts/$target"/malloc-limit-* >/dev/null 2>&1; then
    echo "fuzz target $target found a failure: $(ls "artifacts/$target")"
    exit 1
  fi
done
