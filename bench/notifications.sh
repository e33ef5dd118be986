#!/usr/bin/env bash
# Notification benchmark (issue 16): one release kernel with the webhook channel pointed
# at a local receiver (kernel/examples/notify_bench.rs). Prints the latency from an
# event's commit to the receiver reading the POST (p50/p99, one at a time), and
# notifications per second for a burst of events committed at once, and checks that
# every notification arrived exactly once.
#
#   bench/notifications.sh                           # SQLite, 8 workers, 200 + 5000
#   BURST=20000 JOB_WORKERS=16 bench/notifications.sh
#   PG=1 bench/notifications.sh                      # a fresh PostgreSQL database
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh

echo "==> cargo build --release --example notify_bench"
cargo build --release -p olivine-kernel --example notify_bench

if [ -n "${PG:-}" ]; then
  db="olivine_notify_bench_$$"
  psql_admin "CREATE DATABASE $db"
  trap 'psql_admin "DROP DATABASE IF EXISTS $db" || true' EXIT
  export DATABASE_URL="postgres://$pg_user@$pg_host:$pg_port/$db"
fi
RUST_LOG="${RUST_LOG:-warn}" target/release/examples/notify_bench
