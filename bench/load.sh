#!/usr/bin/env bash
# Load benchmark of the hot read paths against a release build on the embedded store:
# the cached product JSON (plain, brotli, and revalidated by its ETag: all 304s) and the
# product page (plain and brotli). Prints wrk's throughput and latency percentiles, the
# bytes per answer, and how many database connections the server acquired during each
# run (zero means every request was a cache hit that never touched the database).
# The API rate limits are off, as a merchant would set them for a load test from one address;
# a run with any answer other than the expected status fails.
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
  OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off \
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

# run NAME URL EXPECTED-STATUS [HEADER...]
run() {
  local name="$1" url="$2" expected="$3"
  shift 3
  local curl_headers=() wrk_headers=() h
  for h in "$@"; do
    curl_headers+=(-H "$h")
    wrk_headers+=(-H "$h")
  done
  local status bytes
  read -r status bytes < <(curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "${curl_headers[@]}" "$url")
  if [ "$status" != "$expected" ]; then
    echo "error: $name: $url answered $status, not $expected" >&2
    exit 1
  fi
  local before after out
  before="$(metric olivine_db_connection_acquisitions_total)"
  echo
  echo "==> $name: wrk -t$threads -c$connections -d$duration --latency ${wrk_headers[*]} $url"
  echo "one answer: $status, $bytes bytes of body"
  out="$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "${wrk_headers[@]}" "$url")"
  echo "$out"
  after="$(metric olivine_db_connection_acquisitions_total)"
  # A /metrics scrape reads the log and the job queue on the work pool, not this one.
  echo "database connections acquired during the run: $(( ${after%.*} - ${before%.*} ))"
  # wrk reports answers of 400 and up (a 429 from a rate limit, a 500): any fails the run.
  # It cannot tell a 200 from a 304; the one answer before the run was checked with curl.
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "error: $name: some answers were errors (above); the throughput is not the store's" >&2
    exit 1
  fi
}

json="$base/api/v1/products/$slug"
etag="$(curl -fs -D - -o /dev/null -H 'Accept-Encoding: br' "$json" | awk -F': ' 'tolower($1) == "etag" { sub(/\r$/, "", $2); print $2 }')"
run "product JSON (cached)" "$json" 200
run "product JSON (cached, brotli)" "$json" 200 "Accept-Encoding: br"
run "product JSON revalidated (If-None-Match: all 304)" "$json" 304 "Accept-Encoding: br" "If-None-Match: $etag"
run "product page (cached)" "$base/p/$slug" 200
run "product page (cached, brotli)" "$base/p/$slug" 200 "Accept-Encoding: br"
