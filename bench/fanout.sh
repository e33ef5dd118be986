#!/usr/bin/env bash
# Event fan-out benchmark (issue 12): two release nodes on one PostgreSQL database and
# the Redis at REDIS_URL (redis://127.0.0.1:6379); kernel/examples/fanout_bench.rs renames
# a product through node A EDITS times and measures until node B serves each new name
# (p50, p90, p99, max).
#
#   bench/fanout.sh                  # 1000 edits, wake-ups through Redis
#   WAKEUPS=postgres bench/fanout.sh # LISTEN/NOTIFY instead of Redis
#   WAKEUPS=none bench/fanout.sh     # no wake-ups: polling only (OLIVINE_BUS_POLL_MS)
#
# Needs PostgreSQL at PGHOST:PGPORT (127.0.0.1:5432, trust auth, user postgres) and, for
# the default, Redis; the run gets a fresh database that is dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_host="${PGHOST:-127.0.0.1}"
pg_port="${PGPORT:-5432}"
pg_user="${PGUSER:-postgres}"
port_a="${PORT_A:-18093}"
port_b="${PORT_B:-18094}"
wakeups="${WAKEUPS:-redis}"
export EDITS="${EDITS:-1000}"

for tool in psql curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq postgresql-client curl >/dev/null
  fi
done

echo "==> cargo build --release (kernel and the fan-out client)"
cargo build --release -p olivine-kernel --bin olivine --example fanout_bench
bin="${OLIVINE_BIN:-target/release/olivine}"

psql_admin() { psql -X -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -c "$1"; }
db="olivine_fanout_$$"
data="$(mktemp -d)"
psql_admin "CREATE DATABASE $db"
psql_admin "CHECKPOINT"
token="bench-admin-token-$RANDOM$RANDOM"
redis=""
case "$wakeups" in
  redis) redis="${REDIS_URL:-redis://127.0.0.1:6379}" ;;
  postgres) ;;
  none) redis="redis://127.0.0.1:1" ;; # nobody there: wake-ups fail, nodes poll
  *) echo "WAKEUPS is redis, postgres or none" >&2; exit 2 ;;
esac
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql_admin "DROP DATABASE IF EXISTS $db" || true
  rm -rf "$data"
}
trap cleanup EXIT
start_node() {
  local name="$1" port="$2"
  mkdir -p "$data/$name"
  # Both nodes share the master key, as nodes of one store do.
  DATABASE_URL="postgres://$pg_user@$pg_host:$pg_port/$db" REDIS_URL="$redis" \
    OLIVINE_NODE_ID="$name" OLIVINE_DATA_DIR="$data/$name" OLIVINE_MASTER_KEY="$master_key" \
    OLIVINE_ADDR="127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" OLIVINE_SEED_DEMO=false \
    OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off OLIVINE_WATCH_PLUGINS=false RUST_LOG="${RUST_LOG:-warn}" \
    "$bin" serve >"$data/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$data/$name.log"
  exit 1
}
master_key="$(head -c 32 /dev/urandom | base64)"
start_node a "$port_a"
start_node b "$port_b"
echo "==> $EDITS edits through node A, read on node B (wake-ups: $wakeups)"
NODE_A="http://127.0.0.1:$port_a" NODE_B="http://127.0.0.1:$port_b" OLIVINE_ADMIN_TOKEN="$token" \
  target/release/examples/fanout_bench
