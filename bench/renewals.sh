#!/usr/bin/env bash
# Renewal-storm benchmark (issue 14): a release kernel on PostgreSQL with the sandbox
# card processor local (kernel/examples/renewal_storm.rs). SUBSCRIPTIONS subscriptions
# fall due at once while SHOPPERS shoppers browse and buy; prints renewals per second and
# the shoppers' product JSON and checkout latencies with and without the storm.
#
#   bench/renewals.sh                                  # 10000 subscriptions, 16 shoppers
#   SUBSCRIPTIONS=2000 PHASE_SECS=10 bench/renewals.sh  # a quick look
#   OLIVINE_RENEWAL_WORKERS=2 bench/renewals.sh        # another size of renewal lane
#   KERNEL_LOG=/tmp/kernel.log RUST_LOG=warn,sqlx::query=debug SHOPPERS=0 \
#     SUBSCRIPTIONS=100 bench/renewals.sh              # keep the kernel's log: statements
#
# The kernel scans for due subscriptions every OLIVINE_SUBSCRIPTION_SCAN_SECS (5 here;
# 60 by default, so a real store starts a storm up to a minute after the due time).
# Needs PostgreSQL at PGHOST:PGPORT (127.0.0.1:5432, trust auth, user postgres); each
# run gets a fresh database that is dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-1}"
port="${PORT:-18092}"
export SUBSCRIPTIONS="${SUBSCRIPTIONS:-10000}" SHOPPERS="${SHOPPERS:-16}"

. bench/lib.sh

echo "==> cargo build --release (kernel and the load generator)"
cargo build --release -p olivine-kernel --bin olivine --example renewal_storm
bin="${OLIVINE_BIN:-target/release/olivine}"
load=target/release/examples/renewal_storm

for run in $(seq 1 "$runs"); do
  db="olivine_renewals_$$_$run"
  url="postgres://$pg_user@$pg_host:$pg_port/$db"
  data="$(mktemp -d)"
  psql_admin "CREATE DATABASE $db"
  psql_admin "CHECKPOINT"
  token="bench-admin-token-$RANDOM$RANDOM"
  DATABASE_URL="$url" OLIVINE_DATA_DIR="$data" OLIVINE_ADDR="127.0.0.1:$port" \
    OLIVINE_ADMIN_TOKEN="$token" OLIVINE_WATCH_PLUGINS=false \
    OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off OLIVINE_RATE_LIMIT_REGISTER=off \
    OLIVINE_RATE_LIMIT_SIGN_IN=off OLIVINE_RATE_LIMIT_SIGN_IN_ACCOUNT=off \
    OLIVINE_SUBSCRIPTION_SCAN_SECS="${OLIVINE_SUBSCRIPTION_SCAN_SECS:-5}" \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$bin" serve >"$data/kernel.log" 2>&1 &
  pid=$!
  cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -n "${KERNEL_LOG:-}" ]; then cp "$data/kernel.log" "$KERNEL_LOG"; fi
    psql_admin "DROP DATABASE IF EXISTS $db" || true
    rm -rf "$data"
  }
  trap cleanup EXIT
  wait_ready "$port" "$pid" "$data/kernel.log"
  echo
  echo "==> run $run of $runs: $SUBSCRIPTIONS subscriptions, $SHOPPERS shoppers ($bin, database $db)"
  if ! DATABASE_URL="$url" OLIVINE_URL="http://127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" "$load"; then
    echo "==> the load generator stopped; the kernel's log ends:"
    tail -n 200 "$data/kernel.log"
    exit 1
  fi
  cleanup
  trap - EXIT
done
