#!/usr/bin/env bash
# Push benchmark (issue 16): one release kernel with the first-party `apns` channel
# pointed at the tests' mock APNs (HTTP/2 over TLS, test CA, ES256 checked), in the same
# process (kernel/examples/push_bench.rs). Prints the latency from `order.fulfilled`
# committed to the mock receiving the push (p50/p99, one at a time), and pushes per
# second for a burst.
#
#   bench/push.sh                          # SQLite, 8 workers, 200 + 2000
#   BURST=5000 JOB_WORKERS=16 bench/push.sh
#   PG=1 bench/push.sh                     # a fresh PostgreSQL database
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh

echo "==> cargo build --release --example push_bench"
cargo build --release -p olivine-kernel --example push_bench

if [ -n "${PG:-}" ]; then
  db="olivine_push_bench_$$"
  psql_admin "CREATE DATABASE $db"
  trap 'psql_admin "DROP DATABASE IF EXISTS $db" || true' EXIT
  export DATABASE_URL="postgres://$pg_user@$pg_host:$pg_port/$db"
fi
RUST_LOG="${RUST_LOG:-warn}" target/release/examples/push_bench
