#!/usr/bin/env bash
# Load benchmark of the hot read paths against a release build on the embedded store:
# the cached product JSON and the product page. Prints wrk's throughput and latency
# percentiles, and how many database connections the server acquired during each run
# (zero means every request was a cache hit that never touched the database).
#
#   bench/load.sh                 # 20 s per target, 64 connections
#   DURATION=60s CONNECTIONS=128 bench/load.sh
#   OLIVINE_BIN=/path/to/olivine bench/load.sh   # A/B another build
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-20s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
port="${PORT:-18090}"
slug="${SLUG:-magnesium-glycinate}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi

bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel
fi

data="$(mktemp -d)"
OLIVINE_DATA_DIR="$data" OLIVINE_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  "$bin" serve &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
# Wait for the demo seed's events to be dispatched, so no invalidation lands mid-run.
metric() { curl -fs "$base/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
for _ in $(seq 1 300); do
  [ "$(metric olivine_bus_pending_events)" = "0" ] && break
  sleep 0.1
done

run() {
  local name="$1" url="$2"
  curl -fs "$url" >/dev/null # warm the cache
  local before after
  before="$(metric olivine_db_connection_acquisitions_total)"
  echo
  echo "==> $name: wrk -t$threads -c$connections -d$duration --latency $url"
  wrk -t"$threads" -c"$connections" -d"$duration" --latency "$url"
  after="$(metric olivine_db_connection_acquisitions_total)"
  # A /metrics scrape reads the log and the job queue on the work pool, not this one.
  echo "database connections acquired during the run: $(( ${after%.*} - ${before%.*} ))"
}

run "product JSON (cached)" "$base/api/v1/products/$slug"
run "product page (cached)" "$base/p/$slug"
