#!/usr/bin/env bash
# Live updates benchmark: one release `olivine serve` on the embedded SQLite store, and
# kernel/examples/live_bench.rs, which
#   - holds CONNECTIONS idle WebSockets on /api/v1/live (signed in as IDLE_CUSTOMERS
#     customers, each also watching a product's stock) and prints the server's memory per
#     connection: the growth of its resident set (VmRSS) over the connections, once they
#     are open and again after IDLE_SECS (35) idle, through a round of the server's pings;
#   - then makes CHANGES order status changes of another customer through the admin API,
#     one at a time, and prints the time from sending each change to its message arriving
#     on that customer's socket (p50, p90, p99, max), with the idle connections open.
# The API rate limits are off (every connection comes from one address). The open-files
# limit is raised for the kernel and the client (each holds a socket a connection).
#
#   bench/live.sh                                # 5,000 connections, 200 changes
#   CONNECTIONS=10000 CHANGES=500 bench/live.sh
#   OLIVINE_BIN=/path/to/olivine bench/live.sh   # A/B another build (the client is built)
set -euo pipefail
cd "$(dirname "$0")/.."

export CONNECTIONS="${CONNECTIONS:-5000}"
export CHANGES="${CHANGES:-200}"
export IDLE_CUSTOMERS="${IDLE_CUSTOMERS:-20}"
port="${PORT:-18096}"

if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi

# A socket a connection on each side, and some to spare.
need=$((CONNECTIONS + 1024))
if [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "error: $CONNECTIONS connections need $need open files; the hard limit is $(ulimit -Hn)" >&2
  exit 1
fi

echo "==> cargo build --release (kernel and the live client)"
if [ -z "${OLIVINE_BIN:-}" ]; then
  cargo build --release -p olivine-kernel --bin olivine --example live_bench
else
  cargo build --release -p olivine-kernel --example live_bench
fi
bin="${OLIVINE_BIN:-target/release/olivine}"

data="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

token="bench-admin-token-$RANDOM$RANDOM"
unset DATABASE_URL
OLIVINE_DATA_DIR="$data" OLIVINE_ADDR="127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" \
  OLIVINE_SEED_DEMO=false OLIVINE_BUNDLED_PLUGINS=false OLIVINE_WATCH_PLUGINS=false \
  OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off OLIVINE_RATE_LIMIT_SIGN_IN=off \
  OLIVINE_RATE_LIMIT_SIGN_IN_ACCOUNT=off OLIVINE_RATE_LIMIT_REGISTER=off RUST_LOG=warn \
  "$bin" serve >"$data/kernel.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/kernel.log"; exit 1; }
  sleep 0.1
done

echo
echo "==> live_bench: $CONNECTIONS connections, $CHANGES changes (load average before: $(loadavg); open files: $(ulimit -n))"
BASE="http://127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" SERVER_PID="$pid" \
  target/release/examples/live_bench
echo
echo "load average after: $(loadavg)"
if grep -qiE "panicked|ERROR" "$data/kernel.log"; then
  echo "the kernel logged errors:" >&2
  grep -iE "panicked|ERROR" "$data/kernel.log" | head -20 >&2
  exit 1
fi
