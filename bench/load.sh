#!/usr/bin/env bash
# Load benchmark of the hot read paths against a release build on the embedded store:
# the cached product JSON (plain, brotli, and revalidated by its ETag: all 304s) and the
# product page (plain and brotli). Prints wrk's throughput and latency percentiles, the
# bytes per answer, and how many database connections the server acquired during each
# run (zero means every request was a cache hit that never touched the database).
# The API rate limits are off, as a merchant would set them for a load test from one address;
# a run with any answer other than the expected status fails.
#
# Right after the product JSON run, a reference runs on the same machine: a bare axum
# handler (kernel/examples/reference_server.rs, same runtime as `olivine serve`) answering
# the same bytes with the same headers, fetched from Olivine with curl. The script prints
# Olivine's throughput as a ratio of it. At the end Olivine is started again with the
# catalog rate limit on (at a budget no run reaches, so nothing is refused: every request
# is counted, as in production) and the pair runs again: the second ratio.
#
#   bench/load.sh                 # 20 s per target, 64 connections
#   DURATION=60s CONNECTIONS=128 bench/load.sh
#   OLIVINE_BIN=/path/to/olivine bench/load.sh   # A/B another build
#   ROUNDS=3 bench/load.sh        # Olivine and the reference alternately, three times each
#   ONLY_REFERENCE=1 bench/load.sh               # only the product JSON pairs
#   REFERENCE_BIN=/path/to/reference_server bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-20s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
port="${PORT:-18090}"
slug="${SLUG:-magnesium-glycinate}"
rounds="${ROUNDS:-1}"
reference_port=$((port + 1))
# The catalog limit of the second start: counted, never reached (u32 max is 4,294,967,295).
catalog_limit_on="${CATALOG_LIMIT_ON:-4000000000/1m}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi

target_dir="${CARGO_TARGET_DIR:-target}"
bin="${OLIVINE_BIN:-$target_dir/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel
fi
reference_bin="${REFERENCE_BIN:-}"
if [ -z "$reference_bin" ]; then
  reference_bin="$(dirname "$bin")/examples/reference_server"
  if [ ! -x "$reference_bin" ]; then
    echo "==> cargo build --release --example reference_server"
    cargo build --release -p olivine-kernel --example reference_server
    reference_bin="$target_dir/release/examples/reference_server"
  fi
fi

data="$(mktemp -d)"
pid=""
reference_pid=""
trap 'kill $pid $reference_pid 2>/dev/null || true; rm -rf "$data"' EXIT

base="http://127.0.0.1:$port"
metric() { curl -fs "$base/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# start_olivine CATALOG-LIMIT: serves the demo store in $data (seeded at the first start).
start_olivine() {
  OLIVINE_DATA_DIR="$data" OLIVINE_ADDR="127.0.0.1:$port" RUST_LOG=warn \
    OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG="$1" \
    "$bin" serve &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Wait for the demo seed's events to be dispatched, so no invalidation lands mid-run.
  for _ in $(seq 1 300); do
    [ "$(metric olivine_bus_pending_events)" = "0" ] && break
    sleep 0.1
  done
}

stop_olivine() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

# The last run's requests per second.
last_rps=""

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
  last_rps="$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")"
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

# reference LABEL: the product JSON answer as Olivine gives it now (body and headers),
# served by the bare axum handler; wrk against both, alternately, ROUNDS times; ratios.
reference() {
  local label="$1" path="/api/v1/products/$slug" round olivine_rps reference_rps
  curl -fs -D "$data/reference-headers" -o "$data/reference-body" "$base$path"
  "$reference_bin" "127.0.0.1:$reference_port" "$path" "$data/reference-body" "$data/reference-headers" &
  reference_pid=$!
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$reference_port$path" && break
    sleep 0.1
  done
  if ! cmp -s "$data/reference-body" <(curl -fs "http://127.0.0.1:$reference_port$path"); then
    echo "error: the reference does not answer Olivine's bytes" >&2
    exit 1
  fi
  echo
  echo "==> the same bytes from a bare axum handler ($(wc -c <"$data/reference-body") bytes), headers:"
  diff <(grep -iv '^date:' "$data/reference-headers" | tr -d '\r' | sort) \
    <(curl -fs -D - -o /dev/null "http://127.0.0.1:$reference_port$path" | grep -iv '^date:' | tr -d '\r' | sort) \
    && echo "(the same as Olivine's)"
  local ratios=()
  for round in $(seq 1 "$rounds"); do
    run "product JSON (cached), $label, round $round" "$base$path" 200
    olivine_rps="$last_rps"
    run "reference: bare axum handler, same bytes, round $round" "http://127.0.0.1:$reference_port$path" 200
    reference_rps="$last_rps"
    ratios+=("$(awk -v o="$olivine_rps" -v r="$reference_rps" 'BEGIN { printf "%.0f / %.0f = %.2f", o, r, o / r }')")
  done
  kill "$reference_pid" 2>/dev/null || true
  wait "$reference_pid" 2>/dev/null || true
  reference_pid=""
  echo
  echo "==> Olivine / reference, product JSON, $label (requests/s):"
  printf '  %s\n' "${ratios[@]}"
}

json="$base/api/v1/products/$slug"
start_olivine off
reference "API rate limits off"
if [ -z "${ONLY_REFERENCE:-}" ]; then
  etag="$(curl -fs -D - -o /dev/null -H 'Accept-Encoding: br' "$json" | awk -F': ' 'tolower($1) == "etag" { sub(/\r$/, "", $2); print $2 }')"
  run "product JSON (cached, brotli)" "$json" 200 "Accept-Encoding: br"
  run "product JSON revalidated (If-None-Match: all 304)" "$json" 304 "Accept-Encoding: br" "If-None-Match: $etag"
  run "product page (cached)" "$base/p/$slug" 200
  run "product page (cached, brotli)" "$base/p/$slug" 200 "Accept-Encoding: br"
fi
stop_olivine

# As a production store runs: the catalog limit on, every request counted.
start_olivine "$catalog_limit_on"
reference "catalog rate limit on ($catalog_limit_on: counted, never reached)"
stop_olivine
