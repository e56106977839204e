#!/usr/bin/env bash
# The simulations at the real call size (issue 32, benches/README.md "Simulation cost"):
#   scripts/size.sh          200 members x 10,000 steps, light faults, on each server (model, real,
#                            hostile; at most 10 minutes each), then 20 members x 1,000,000 steps
#                            (light faults, model server; at most 30 minutes)
#   scripts/size.sh smoke    200 members x 200 steps, light faults, hostile server (CI: ~1 minute)
# Every invariant is checked at every step as in any run; a run is reproducible from its seed
# (SEED, default 1): a failure prints the seed, the step, the invariant and the last steps. A run
# past its bound fails too. Prints each run's report (JSON) with its wall time and the load.
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${SEED:-1}"
# --all-features: the same release build as CI's conformance tests (openssl-sha512 included).
cargo build --release --all-features --bin confchain --quiet
bin=target/release/confchain

run() { # bound_s, then simulate's arguments
  local bound="$1"
  shift
  echo "== simulate $* --seed $seed (bound ${bound} s; load $(cut -d' ' -f1-3 /proc/loadavg))"
  local start end
  start=$(date +%s)
  if ! timeout "$bound" "$bin" simulate "$@" --seed "$seed" --json; then
    echo "FAILED or over ${bound} s: simulate $* --seed $seed"
    exit 1
  fi
  end=$(date +%s)
  echo "   $((end - start)) s"
}

if [ "${1:-}" = smoke ]; then
  run 300 --members 200 --steps 200 --faults light --server hostile
  exit 0
fi
for server in model real hostile; do
  run 600 --members 200 --steps 10000 --faults light --server "$server"
done
run 1800 --members 20 --steps 1000000 --faults light --server model
