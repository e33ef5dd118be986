#!/usr/bin/env bash
# Per-customer keys benchmark (docs/PERFORMANCE.md, "Per-customer keys"), on the embedded
# SQLite store, or on PostgreSQL with BACKEND=postgres (a fresh schema of DATABASE_URL,
# default postgres://postgres@127.0.0.1:5432/test; needs psql):
#
# 1. the re-encryption rate: CUSTOMERS customers imported (`olivine import customers`),
#    then turned back into a store from before per-customer keys (every email and name
#    re-encrypted under the shared data key, `v1`, and no customer keys; done here in
#    Python straight on the file, which also checks the field formats from outside),
#    then `olivine keys per-customer` timed;
# 2. the account page (`GET /api/v1/account/me`, which decrypts email and name) for a
#    customer under their own key (cached after the first request) against one whose
#    fields are under the shared key: REQUESTS requests each over one keep-alive
#    connection, then the first request of COLD customers of each kind (key not cached);
# 3. sign-in of both customers, 20 each, interleaved (argon2id dominates; sign-in
#    decrypts nothing).
#
#   bench/customer_keys.sh                         # 100,000 customers
#   CUSTOMERS=5000 REQUESTS=500 bench/customer_keys.sh
#   OLIVINE_BIN=target/release/olivine bench/customer_keys.sh
#   BACKEND=postgres bench/customer_keys.sh
set -euo pipefail
cd "$(dirname "$0")/.."

customers="${CUSTOMERS:-100000}"
requests="${REQUESTS:-2000}"
cold="${COLD:-20}"
batch="${BATCH:-500}"
port="${PORT:-18093}"
bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel --bin olivine
fi

work="$(mktemp -d)"
pid=""
backend="${BACKEND:-sqlite}"
base="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
schema="bench_keys_$$"
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ "$backend" = postgres ] && psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
export OLIVINE_DATA_DIR="$work/data"
mkdir -p "$OLIVINE_DATA_DIR"
if [ "$backend" = postgres ]; then
  psql "$base" -qc "CREATE SCHEMA $schema"
  export DATABASE_URL="$base?options=-c%20search_path%3D$schema"
  # sql QUERY: runs it; csv_out QUERY: its rows as CSV; csv_in TABLE FILE: loads a CSV.
  sql() { psql "$base" -qAt -v ON_ERROR_STOP=1 -c "SET search_path TO $schema; $1"; }
  csv_out() { psql "$base" -qAt -v ON_ERROR_STOP=1 -c "SET search_path TO $schema" -c "\\copy ($1) TO STDOUT WITH CSV"; }
  csv_in() { psql "$base" -qAt -v ON_ERROR_STOP=1 -c "SET search_path TO $schema" -c "\\copy $1 FROM '$2' WITH CSV"; }
else
  unset DATABASE_URL
  db="$OLIVINE_DATA_DIR/olivine.db"
  sql() { sqlite3 "$db" "$1"; }
  csv_out() { sqlite3 -csv "$db" "$1"; }
  csv_in() { sqlite3 "$db" ".mode csv" ".import $2 $1"; }
fi
token="bench-admin-token-$RANDOM$RANDOM"
serve() {
  OLIVINE_ADDR="127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" \
    OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_REGISTER=off OLIVINE_RATE_LIMIT_SIGN_IN=off \
    OLIVINE_RATE_LIMIT_SIGN_IN_ACCOUNT=off OLIVINE_WATCH_PLUGINS=false RUST_LOG="${RUST_LOG:-warn}" \
    "$bin" serve >"$work/kernel.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/kernel.log"; exit 1; }
    sleep 0.1
  done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

echo "==> $customers customers (olivine import customers)"
"$bin" migrate >/dev/null
hash='$2a$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW'
python3 - "$work/customers.csv" "$customers" "$hash" <<'PY'
import sys
path, n, hash_ = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    f.write("legacy_id,email,name,password_hash\n")
    for i in range(n):
        f.write(f"c{i},user{i}@example.com,User {i},{hash_}\n")
PY
"$bin" import customers "$work/customers.csv" --batch-size 1000 | tail -1

# Two customers with a password we know, for the account page and sign-in.
serve
for who in own shared; do
  curl -fs -X POST "http://127.0.0.1:$port/api/v1/account/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$who@bench.example\",\"password\":\"correct horse battery\",\"name\":\"Bench $who\"}" >/dev/null
done
for i in $(seq 1 "$cold"); do
  for who in own shared; do
    curl -fs -X POST "http://127.0.0.1:$port/api/v1/account/register" -H 'content-type: application/json' \
      -d "{\"email\":\"$who$i@bench.example\",\"password\":\"correct horse battery\",\"name\":\"Cold $who $i\"}" >/dev/null
  done
done
stop

# The shared-key (v1) format, from outside the kernel: customers (all, or all but the
# `own…` ones) back under the shared data key, and their keys deleted. The rows go out as
# CSV, are re-encrypted in Python, and come back through a scratch table.
downgrade() {
  csv_out "SELECT id, purpose, wrapped FROM account_keys" >"$work/account_keys.csv"
  csv_out "SELECT c.id, c.email_enc, c.name_enc, k.wrapped FROM customers c JOIN customer_keys k ON k.customer_id = c.id" >"$work/rows.csv"
  python3 - "$work" "$OLIVINE_DATA_DIR/master.key" "$1" <<'PY'
import base64, csv, os, sys, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
work, key_path, only = sys.argv[1], sys.argv[2], sys.argv[3]
master = base64.b64decode(open(key_path).read().strip())
def unwrap(key, aad, wrapped):
    sealed = base64.b64decode(wrapped)
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
keys = {kid: unwrap(master, f"olivine.key.v1:{purpose}:{kid}".encode(), wrapped)
        for kid, purpose, wrapped in csv.reader(open(f"{work}/account_keys.csv"))}
kek, data = keys["customer-1"], keys["data-1"]
started, done = time.time(), 0
with open(f"{work}/v1.csv", "w", newline="") as out:
    writer = csv.writer(out)
    for cid, email, name, wrapped in csv.reader(open(f"{work}/rows.csv")):
        ckey = unwrap(kek, f"olivine.customer-key.v1:{cid}".encode(), wrapped)
        plain = []
        for context, stored in (("customers.email", email), ("customers.name", name)):
            prefix = f"v2:c{cid}:"
            assert stored.startswith(prefix), stored
            sealed = base64.b64decode(stored[len(prefix):])
            plain.append(AESGCM(ckey).decrypt(sealed[:12], sealed[12:], f"olivine.field.v2:{cid}:{context}".encode()))
        if only == "all-but-own" and plain[0].decode().startswith("own"):
            continue
        row = [cid]
        for context, value in zip(("customers.email", "customers.name"), plain):
            nonce = os.urandom(12)
            row.append("v1:data-1:" + base64.b64encode(nonce + AESGCM(data).encrypt(nonce, value, f"olivine.field.v1:{context}".encode())).decode())
        writer.writerow(row)
        done += 1
print(f"    {done} customers back under the shared key in {time.time() - started:.1f} s (Python)")
PY
  sql "CREATE TABLE bench_v1 (id BIGINT PRIMARY KEY, email_enc TEXT, name_enc TEXT)"
  csv_in bench_v1 "$work/v1.csv"
  sql "UPDATE customers SET email_enc = (SELECT email_enc FROM bench_v1 WHERE bench_v1.id = customers.id),
         name_enc = (SELECT name_enc FROM bench_v1 WHERE bench_v1.id = customers.id)
       WHERE id IN (SELECT id FROM bench_v1);
       DELETE FROM customer_keys WHERE customer_id IN (SELECT id FROM bench_v1);
       DROP TABLE bench_v1"
}

echo "==> back to the shared key (a store from before per-customer keys)"
downgrade all
echo "==> olivine keys per-customer --batch-size $batch"
start=$(date +%s.%N)
"$bin" keys per-customer --batch-size "$batch" | tail -3
end=$(date +%s.%N)
python3 -c "s=$end-$start; n=$customers+2+2*$cold; print(f're-encryption: {n} customers in {s:.1f} s, {n/s:.0f} customers/s')"

echo "==> the account page: own key against shared key"
downgrade all-but-own >/dev/null
serve
python3 - "$port" "$requests" "$cold" <<'PY'
import http.client, json, statistics, sys, time
port, n, cold = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def call(conn, method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    r = conn.getresponse(); data = r.read()
    assert r.status < 300, (r.status, data)
    return json.loads(data) if data else None
def sign_in(conn, email):
    t = time.perf_counter()
    pair = call(conn, "POST", "/api/v1/account/sign-in", {"email": email, "password": "correct horse battery"})
    return pair["access_token"], time.perf_counter() - t
conn = http.client.HTTPConnection("127.0.0.1", port)
def me_times(token, count):
    times = []
    for _ in range(count):
        t = time.perf_counter(); call(conn, "GET", "/api/v1/account/me", token=token); times.append(time.perf_counter() - t)
    return times
def report(label, times):
    times = sorted(times)
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1e3
    print(f"    {label}: mean {statistics.mean(times)*1e3:.3f} ms, p50 {p(0.5):.3f} ms, p99 {p(0.99):.3f} ms ({len(times)} requests)")
tokens = {}
signins = {"own": [], "shared": []}
for _ in range(3):  # warm up argon2id's blocking threads
    sign_in(conn, "own@bench.example")
for _ in range(20):  # interleaved, so drift of the machine hits both alike
    for who in ("shared", "own"):
        tok, secs = sign_in(conn, f"{who}@bench.example"); signins[who].append(secs)
        tokens[who] = tok
me_times(tokens["own"], 50); me_times(tokens["shared"], 50)  # warm up both paths
for rnd in range(2):
    for who in ("shared", "own"):
        report(f"account page, {who} key (round {rnd+1})", me_times(tokens[who], n))
cold_times = {"own": [], "shared": []}
for i in range(1, cold + 1):
    for who in ("own", "shared"):
        tok, _ = sign_in(conn, f"{who}{i}@bench.example")
        cold_times[who] += me_times(tok, 1)
for who in ("shared", "own"):
    report(f"account page, first request of a customer, {who} key", cold_times[who])
for who in ("shared", "own"):
    report(f"sign-in, {who} key", signins[who])
PY
stop
