#!/usr/bin/env bash
# Checkout benchmark (issue 5): a release kernel on PostgreSQL with its bundled pricing
# rules (tiered-volume and subscribe-and-save active), the sandbox card processor local,
# and BUYERS concurrent buyers (kernel/examples/checkout_load.rs). Prints paid orders per
# second with checkout latency, then add-to-cart latency saturated and at a set pace.
#
#   bench/checkout.sh                       # 32 buyers, 20 s per phase, once
#   RUNS=3 PHASE_SECS=30 bench/checkout.sh
#   OLIVINE_BIN=/path/to/olivine bench/checkout.sh    # A/B another build
#   CUSTOMERS=1 LOYALTY=0 bench/checkout.sh; CUSTOMERS=1 bench/checkout.sh
#                                           # signed-in buyers, loyalty off / on (and the
#                                           # time from order.paid to points in the account)
#
# Needs PostgreSQL at PGHOST:PGPORT (127.0.0.1:5432, trust auth, user postgres); each
# run gets a fresh database that is dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-1}"
port="${PORT:-18091}"
export BUYERS="${BUYERS:-32}" PHASE_SECS="${PHASE_SECS:-20}"

. bench/lib.sh

echo "==> cargo build --release (kernel and the load generator)"
cargo build --release -p olivine-kernel --bin olivine --example checkout_load
bin="${OLIVINE_BIN:-target/release/olivine}"
load=target/release/examples/checkout_load

for run in $(seq 1 "$runs"); do
  db="olivine_bench_$$_$run"
  data="$(mktemp -d)"
  psql_admin "CREATE DATABASE $db"
  # Every run starts from a checkpoint, so one run's WAL does not slow the next.
  psql_admin "CHECKPOINT"
  token="bench-admin-token-$RANDOM$RANDOM"
  DATABASE_URL="postgres://$pg_user@$pg_host:$pg_port/$db" \
    OLIVINE_DATA_DIR="$data" OLIVINE_ADDR="127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" \
    OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off \
    OLIVINE_RATE_LIMIT_REGISTER=off OLIVINE_RATE_LIMIT_SIGN_IN=off OLIVINE_RATE_LIMIT_SIGN_IN_ACCOUNT=off OLIVINE_WATCH_PLUGINS=false RUST_LOG="${RUST_LOG:-warn}" \
    "$bin" serve >"$data/kernel.log" 2>&1 &
  pid=$!
  cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    psql_admin "DROP DATABASE IF EXISTS $db" || true
    rm -rf "$data"
  }
  trap cleanup EXIT
  wait_ready "$port" "$pid" "$data/kernel.log"
  echo
  echo "==> run $run of $runs: $BUYERS buyers, $PHASE_SECS s per phase ($bin, database $db)"
  if ! OLIVINE_URL="http://127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" "$load"; then
    echo "==> the load generator stopped; the kernel's log ends:"
    tail -n 200 "$data/kernel.log"
    exit 1
  fi
  cleanup
  trap - EXIT
done
