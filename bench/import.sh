#!/usr/bin/env bash
# Import benchmark: CUSTOMERS customers and ORDERS historical orders (one line each, the
# demo catalog's SKUs) through `olivine import` on PostgreSQL (DATABASE_URL, a fresh
# schema), as CSV files generated here. Prints each import's wall time and rows per
# second, then the time of a second run of the orders file (nothing changes: the
# fingerprint check alone). Storefront p99 during the import is not measured yet.
#
#   bench/import.sh                                  # 100,000 customers, 300,000 orders
#   CUSTOMERS=2000 ORDERS=6000 bench/import.sh       # a quick look
#   OLIVINE_BIN=/path/to/olivine bench/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."

customers="${CUSTOMERS:-100000}"
orders="${ORDERS:-300000}"
batch="${BATCH:-500}"
base="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
schema="bench_import_$$"

bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel --bin olivine
fi

work="$(mktemp -d)"
trap 'psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
psql "$base" -qc "CREATE SCHEMA $schema"
export DATABASE_URL="$base?options=-c%20search_path%3D$schema"
export OLIVINE_DATA_DIR="$work/data"

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

run() {
  local kind="$1" file="$2" rows="$3"
  local start end
  start=$(date +%s.%N)
  "$bin" import "$kind" "$file" --batch-size "$batch" | tail -3
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'$kind: {s:.1f} s, {$rows/s:.0f} rows/s')"
}

run customers "$work/customers.csv" "$customers"
run orders "$work/orders.csv" "$orders"
echo "==> the orders file again (nothing changes)"
run orders "$work/orders.csv" "$orders"
