#!/usr/bin/env bash
# Import benchmark (issue 21): CUSTOMERS customers and ORDERS historical orders (one line
# each, the demo catalog's SKUs) through `olivine import` on PostgreSQL (DATABASE_URL, a
# fresh schema), as CSV files generated here, while `olivine serve` runs on the same
# database and wrk asks for a product page. Prints each import's wall time and rows per
# second, the time of a second run of the orders file (nothing changes: the fingerprint
# check alone), and the product page's latency (p50, p99) idle before the imports and
# during each of them. Any answer other than 200 fails the run.
#
# The storefront load is paced, as shoppers are, not a flood: CONNECTIONS connections
# (default 4), each asking again DELAY_MS (default 20) ms after its answer, so at most
# about CONNECTIONS * 1000 / DELAY_MS requests a second (200). A flood on this 2-core
# machine would measure how wrk, the server and the import share two cores, not how the
# import disturbs a store.
#
#   bench/import.sh                                  # 100,000 customers, 300,000 orders
#   CUSTOMERS=2000 ORDERS=6000 bench/import.sh       # a quick look
#   OLIVINE_BIN=/path/to/olivine bench/import.sh
#   BATCH=1000 IDLE=30s CONNECTIONS=8 DELAY_MS=10 PORT=18100 bench/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/wrk.lua.sh

customers="${CUSTOMERS:-100000}"
orders="${ORDERS:-300000}"
batch="${BATCH:-500}"
idle="${IDLE:-20s}"
connections="${CONNECTIONS:-4}"
delay_ms="${DELAY_MS:-20}"
slug="${SLUG:-magnesium-glycinate}"
base="${DATABASE_URL:-postgres://$pg_user@$pg_host:$pg_port/test}"
schema="bench_import_$$"

bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel --bin olivine
fi
if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# A free port unless PORT is given.
port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

work="$(mktemp -d)"
pid=""
load_pid=""
cleanup() {
  kill "$load_pid" "$pid" 2>/dev/null || true
  psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$base" -qc "CREATE SCHEMA $schema"
export DATABASE_URL="$base?options=-c%20search_path%3D$schema"
export OLIVINE_DATA_DIR="$work/data"
export RUST_LOG="${RUST_LOG:-warn}"

echo "==> machine: $(nproc) cores,$(uptime | sed 's/.*load average/ load average/')"

echo "==> the demo catalog"
"$bin" seed >/dev/null

echo "==> generating $customers customers and $orders orders"
# A well-formed bcrypt hash (Wikipedia's example): the import parses hashes, it does
# not verify them.
hash='$2a$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW'
python3 - "$work" "$customers" "$orders" "$hash" <<'PY'
import sys
work, customers, orders, hash_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open(f"{work}/customers.csv", "w") as f:
    f.write("legacy_id,email,name,password_hash\n")
    for i in range(customers):
        f.write(f"c{i},user{i}@example.com,User {i},{hash_}\n")
with open(f"{work}/orders.csv", "w") as f:
    f.write("legacy_id,customer,email,status,currency,placed_at,subtotal,total,prices_include_tax,"
            "ship_name,ship_line1,ship_city,ship_postal_code,ship_country,line_sku,line_quantity,"
            "line_unit_price,line_total\n")
    for i in range(orders):
        c = i % customers
        f.write(f"o{i},c{c},user{c}@example.com,delivered,EUR,2024-01-01 10:00:00,19.99,19.99,true,"
                f"User {c},Main St 1,Amsterdam,1011AA,NL,MAG-GLY-60,1,19.99,19.99\n")
PY

echo "==> olivine serve on port $port (rate limits off: the load comes from one address)"
OLIVINE_ADDR="127.0.0.1:$port" RUST_LOG=warn OLIVINE_RATE_LIMIT_API=off \
  OLIVINE_RATE_LIMIT_CATALOG=off "$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
wait_ready "$port" "$pid" "$work/serve.log"
page="http://127.0.0.1:$port/p/$slug"
status="$(curl -s -o /dev/null -w '%{http_code}' "$page")"
if [ "$status" != 200 ]; then
  echo "error: $page answered $status, not 200" >&2
  exit 1
fi

# Paced requests, and every answer that is not 200 counted.
only_200_lua "$delay_ms" >"$work/load.lua"

# load_start: wrk against the product page until load_stop (SIGINT: wrk stops and
# reports what it measured).
load_start() {
  wrk -t2 -c"$connections" -d24h --latency -s "$work/load.lua" "$page" >"$work/load.out" 2>&1 &
  load_pid=$!
  sleep 1
}

# load_stop LABEL: stops wrk, prints its p50, p99 and rate, fails on any answer not 200.
load_stop() {
  kill -INT "$load_pid"
  wait "$load_pid" || true
  load_pid=""
  local out
  out="$(cat "$work/load.out")"
  require_only_200 "$1" "$out"
  printf 'storefront %-24s p50 %8s  p99 %8s  max %8s  %s req/s\n' "$1:" \
    "$(awk '$1 == "50%" { print $2 }' <<<"$out")" "$(awk '$1 == "99%" { print $2 }' <<<"$out")" \
    "$(awk '$1 == "Latency" { print $4 }' <<<"$out")" \
    "$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")"
}

echo "==> storefront idle: wrk -t2 -c$connections, one request per connection every ${delay_ms} ms, $idle, $page"
load_start
sleep "$idle"
load_stop "idle"

# run KIND FILE ROWS [LABEL]: the import, timed, with the storefront load running.
run() {
  local kind="$1" file="$2" rows="$3" label="${4:-during the $1 import}"
  local start end
  load_start
  start=$(date +%s.%N)
  "$bin" import "$kind" "$file" --batch-size "$batch" >"$work/import.out"
  end=$(date +%s.%N)
  load_stop "$label"
  grep -E "^$kind:|nothing changed" "$work/import.out" || true
  python3 -c "s=$end-$start; print(f'$kind: {s:.1f} s, {$rows/s:.0f} rows/s')"
  echo "load: $(uptime | sed 's/.*load average: //')"
}

run customers "$work/customers.csv" "$customers"
run orders "$work/orders.csv" "$orders"
echo "==> the orders file again (nothing changes)"
run orders "$work/orders.csv" "$orders" "during the orders re-run"
