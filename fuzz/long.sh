#!/usr/bin/env bash
# Usage: fuzz/long.sh SECONDS [TARGET...]
#
# Fuzzes every target (or those named) for SECONDS each, one after the other, each in one
# libFuzzer process (one core), with AddressSanitizer and -O as CI does, starting from the
# committed corpus (corpus/<target>) and the seeds (seeds/<target>). Afterwards it merges what the
# run found into corpus/<target>, minimized with `cargo fuzz cmin` (so the corpus only grows by
# inputs that add coverage), and appends one line per target to the results table at the end of
# fuzz/README.md: date, commit, seconds, executions, coverage (`cov:` edges, `ft:` features) at the
# end, corpus files after the merge, and findings (artifacts, named). A finding stops that target
# (the run goes on with the next); its input stays in artifacts/<target>. Commit the corpus and the
# README line afterwards. Inputs that once failed keep their artifact names in the corpus. The bar before a change to a target's code is called done: 3600 s.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:?usage: fuzz/long.sh SECONDS [TARGET...]}"
shift
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
. ./args.sh
python3 seed_corpus.py
cargo fuzz build -O
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
commit="$(git rev-parse --short HEAD)"
git diff --quiet HEAD -- ../src fuzz_targets || commit="$commit+changes"
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target" "artifacts/$target"
  work="$(mktemp -d)"
  log="$(mktemp)"
  before="$(ls "artifacts/$target")"
  echo "fuzzing $target for ${seconds}s (log: $log)"
  # shellcheck disable=SC2046
  cargo fuzz run -O "$target" "$work" "corpus/$target" "seeds/$target" -- -max_total_time="$seconds" \
    -print_final_stats=1 $(target_args "$target") >"$log" 2>&1 || true
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  status="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)"
  cov="$(echo "$status" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')"
  ft="$(echo "$status" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')"
  findings="$(comm -13 <(echo "$before") <(ls "artifacts/$target") | tr '\n' ' ' | sed 's/ $//')"
  [ -n "$findings" ] || findings="none"
  # Merge: what the run kept, and the seeds, into the committed corpus, then minimize it.
  cp -n "$work"/* "corpus/$target"/ 2>/dev/null || true
  cp -n "seeds/$target"/* "corpus/$target"/ 2>/dev/null || true
  # Inputs that once failed (crash-*, oom-*, ...) stay by name, whatever their coverage.
  kept="$(mktemp -d)"
  find "corpus/$target" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'slow-unit-*' \) -exec mv {} "$kept"/ \;
  cargo fuzz cmin -O "$target" "corpus/$target" >>"$log" 2>&1
  mv "$kept"/* "corpus/$target"/ 2>/dev/null || true
  rm -rf "$kept"
  files="$(ls "corpus/$target" | wc -l)"
  bytes="$(du -sb "corpus/$target" | cut -f1)"
  rm -rf "$work"
  line="| $(date -u +%F) | $commit | \`$target\` | $seconds | ${execs:-?} | ${cov:-?} | ${ft:-?} | $files ($bytes B) | $findings |"
  echo "$line"
  echo "$line" >>README.md
done
