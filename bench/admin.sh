#!/usr/bin/env bash
# Admin pages at volume (issue 23: every page under 50 ms p99 with 10,000 orders and
# 100,000 lots). On PostgreSQL (DATABASE_URL, a fresh schema): the synthetic catalog
# (VARIANTS variants, about 1.3 lots each), CUSTOMERS customers and ORDERS historical
# orders imported with `olivine import`; then a staff member signs in and wrk asks each
# admin page in turn with the session cookie. Prints each page's wrk latency (p50, p99)
# and fails on any answer that is not the page's 200 (a 303 to sign-in, a 403, a 500).
#
#   bench/admin.sh                                 # 80,000 variants (~100k lots), 10,000 orders
#   VARIANTS=8000 ORDERS=1000 bench/admin.sh       # a quick look
#   OLIVINE_BIN=/path/to/olivine bench/admin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/wrk.lua.sh

variants="${VARIANTS:-80000}"
customers="${CUSTOMERS:-2000}"
orders="${ORDERS:-10000}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-4}"
port="${PORT:-18093}"
base="${DATABASE_URL:-postgres://$pg_user@$pg_host:$pg_port/test}"
schema="bench_admin_$$"

bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel --bin olivine
fi
if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

work="$(mktemp -d)"
pid=""
trap 'kill $pid 2>/dev/null || true; psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
psql "$base" -qc "CREATE SCHEMA $schema"
export DATABASE_URL="$base?options=-c%20search_path%3D$schema"
export OLIVINE_DATA_DIR="$work/data"
export OLIVINE_ADMIN_TOKEN="bench-admin-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
in_schema() { psql "$base" -qAt -c "SET search_path TO $schema; $1" | tail -n +1; }

echo "==> the synthetic catalog: $variants variants"
"$bin" seed --synthetic "$variants" | tail -2
echo "lots: $(in_schema "SELECT COUNT(*) FROM lots")"

echo "==> $customers customers and $orders orders, imported"
in_schema "SELECT sku FROM variants ORDER BY id LIMIT 400" >"$work/skus.txt"
hash='$2a$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW'
python3 - "$work" "$customers" "$orders" "$hash" <<'PY'
import sys, datetime
work, customers, orders, hash_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
skus = [s.strip() for s in open(f"{work}/skus.txt") if s.strip()]
statuses = ["paid", "fulfilled", "delivered", "delivered", "delivered", "cancelled", "refunded"]
with open(f"{work}/customers.csv", "w") as f:
    f.write("legacy_id,email,name,password_hash\n")
    for i in range(customers):
        f.write(f"c{i},user{i}@example.com,User {i},{hash_}\n")
start = datetime.datetime(2025, 1, 1, 8, 0, 0)
with open(f"{work}/orders.csv", "w") as f:
    f.write("legacy_id,customer,email,status,currency,placed_at,subtotal,total,prices_include_tax,"
            "ship_name,ship_line1,ship_city,ship_postal_code,ship_country,line_sku,line_quantity,"
            "line_unit_price,line_total\n")
    for i in range(orders):
        c = i % customers
        at = (start + datetime.timedelta(minutes=47 * i)).strftime("%Y-%m-%d %H:%M:%S")
        sku = skus[i % len(skus)]
        f.write(f"o{i},c{c},user{c}@example.com,{statuses[i % len(statuses)]},EUR,{at},19.99,19.99,true,"
                f"User {c},Main St 1,Amsterdam,1011AA,NL,{sku},1,19.99,19.99\n")
PY
"$bin" import customers "$work/customers.csv" | tail -1
"$bin" import orders "$work/orders.csv" | tail -1
echo "orders: $(in_schema "SELECT COUNT(*) FROM orders")"

echo "==> olivine serve (rate limits off: a load test from one address)"
OLIVINE_ADDR="127.0.0.1:$port" RUST_LOG=warn OLIVINE_RATE_LIMIT_API=off \
  OLIVINE_RATE_LIMIT_CATALOG=off "$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
wait_ready "$port" "$pid" "$work/serve.log"
api="http://127.0.0.1:$port/api/v1"
curl -fs -X POST "$api/admin/staff" -H "Authorization: Bearer $OLIVINE_ADMIN_TOKEN" \
  -H 'content-type: application/json' \
  -d '{"email":"bench@staff.example","name":"Bench","role":"owner","password":"a long bench password"}' >/dev/null
session="$(curl -fs -X POST "$api/staff/sign-in" -H 'content-type: application/json' \
  -d '{"email":"bench@staff.example","password":"a long bench password"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
cookie="Cookie: olv_staff=$session"
order="$(in_schema "SELECT number FROM orders ORDER BY id DESC LIMIT 1")"
product="$(in_schema "SELECT MAX(id) FROM products")"
lot="$(in_schema "SELECT MAX(id) FROM lots")"
import_run="$(in_schema "SELECT MAX(id) FROM import_runs")"

only_200_lua >"$work/only-200.lua"

# page PATH: one answer checked (200), then wrk; prints p50 and p99. Any answer that is
# not 200 during the run fails it.
page() {
  local url="http://127.0.0.1:$port$1" status out
  status="$(curl -s -o /dev/null -w '%{http_code}' -H "$cookie" "$url")"
  if [ "$status" != 200 ]; then
    echo "error: $1 answered $status, not 200" >&2
    exit 1
  fi
  out="$(wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/only-200.lua" -H "$cookie" "$url")"
  require_only_200 "$1" "$out"
  printf '%-48s p50 %8s  p99 %8s  %s req/s\n' "$1" \
    "$(awk '$1 == "50%" { print $2 }' <<<"$out")" "$(awk '$1 == "99%" { print $2 }' <<<"$out")" \
    "$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")"
}

echo "==> pages: wrk -t2 -c$connections -d$duration --latency, the session cookie"
for path in /admin /admin/orders "/admin/orders?status=delivered" "/admin/orders?email=user7%40example.com" \
  "/admin/orders?sku=$(head -1 "$work/skus.txt")" "/admin/orders/$order" /admin/products \
  "/admin/products/$product" "/admin/lots?expiring=30" "/admin/lots?expiring=90" /admin/recalls \
  /admin/subscriptions "/admin/customers?q=user7%40example.com" /admin/audit /admin/plugins \
  /admin/staff /admin/operations /admin/categories /admin/campaigns "/admin/products/$product/images" \
  "/admin/products?status=active&stock=out" "/admin/lots/$lot" /admin/imports "/admin/imports/$import_run" \
  /admin/reviews /admin/privacy-requests /admin/notifications /admin/settings /admin/rates /admin/locations; do
  if [ "$path" = "/admin/customers?q=user7%40example.com" ]; then
    # The search answers a redirect to the customer's page: measure the page.
    path="$(curl -s -o /dev/null -w '%{redirect_url}' -H "$cookie" "http://127.0.0.1:$port$path")"
    path="${path#http://127.0.0.1:$port}"
  fi
  page "$path"
done
