#!/usr/bin/env bash
# Where a cached product JSON request's CPU goes, layer by layer: Olivine (release build,
# embedded store, every middleware a production store runs: trace, compression, metrics,
# security headers, the catalog rate limit counted but never reached) and the bare axum
# reference serving the same bytes (kernel/examples/reference_server.rs) are each loaded
# with wrk while `perf` samples them. Prints the CPU time per request of each (from the
# process's task clock) and Olivine's samples grouped by the component their function
# belongs to (by symbol: tokio, hyper, the kernel's network stack, tower-http, metrics…),
# beside the reference's, so the difference between the two is named.
#
#   bench/profile.sh                                    # 10 s each, 64 connections
#   DURATION=20 OLIVINE_BIN=target/release/olivine REFERENCE_BIN=... bench/profile.sh
#
# Needs `perf` (Debian: linux-perf) and wrk; run as root or with kernel.perf_event_paranoid
# at most 1. Inlining folds small functions into their callers, so a component's share is
# the time spent in its own (not inlined) code.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-10}"
connections="${CONNECTIONS:-64}"
port="${PORT:-18190}"
slug="${SLUG:-magnesium-glycinate}"
reference_port=$((port + 1))

for tool in wrk perf curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is needed (apt-get install wrk linux-perf curl)" >&2
    exit 1
  fi
done
target_dir="${CARGO_TARGET_DIR:-target}"
bin="${OLIVINE_BIN:-$target_dir/release/olivine}"
reference_bin="${REFERENCE_BIN:-$(dirname "$bin")/examples/reference_server}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel --bin olivine --example reference_server
fi

data="$(mktemp -d)"
pid=""
reference_pid=""
trap 'kill $pid $reference_pid 2>/dev/null || true; rm -rf "$data"' EXIT
base="http://127.0.0.1:$port"
path="/api/v1/products/$slug"

OLIVINE_DATA_DIR="$data" OLIVINE_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=4000000000/1m "$bin" serve &
pid=$!
for _ in $(seq 1 300); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
for _ in $(seq 1 300); do
  [ "$(curl -fs "$base/metrics" | awk '$1 == "olivine_bus_pending_events" { print $2 }')" = "0" ] && break
  sleep 0.1
done
curl -fs -D "$data/headers" -o "$data/body" "$base$path"
"$reference_bin" "127.0.0.1:$reference_port" "$path" "$data/body" "$data/headers" &
reference_pid=$!
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$reference_port$path" && break
  sleep 0.1
done

# profile NAME PID URL: wrk for $duration s while perf samples PID; prints requests/s and
# CPU µs a request; leaves the samples in $data/NAME.perf.
profile() {
  local name="$1" target="$2" url="$3" out requests task_ms
  # Warm up (caches, connection pools), then measure.
  wrk -t2 -c"$connections" -d2s "$url" >/dev/null
  perf record -q -F 1999 -g -p "$target" -o "$data/$name.perf" -- sleep "$duration" 2>/dev/null &
  local perf_pid=$!
  perf stat -x, -e task-clock,context-switches,cpu-migrations -p "$target" -o "$data/$name.stat" -- sleep "$duration" 2>/dev/null &
  local stat_pid=$!
  out="$(wrk -t2 -c"$connections" -d"${duration}s" "$url")"
  wait "$perf_pid" "$stat_pid" || true
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "error: $name: some answers were errors; the figures are not the store's" >&2
    exit 1
  fi
  requests="$(awk '/requests in/ { print $1 }' <<<"$out")"
  task_ms="$(awk -F, '$3 ~ /task-clock/ { print $1; exit }' "$data/$name.stat")"
  switches="$(awk -F, '$3 ~ /context-switches/ { print $1; exit }' "$data/$name.stat")"
  migrations="$(awk -F, '$3 ~ /cpu-migrations/ { print $1; exit }' "$data/$name.stat")"
  printf '%-10s %10s requests/s   %6.1f µs of CPU a request   %5.3f context switches and %5.3f migrations a request\n' "$name" \
    "$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")" \
    "$(awk -v ms="$task_ms" -v n="$requests" 'BEGIN { print ms * 1000 / n }')" \
    "$(awk -v c="$switches" -v n="$requests" 'BEGIN { print c / n }')" \
    "$(awk -v c="$migrations" -v n="$requests" 'BEGIN { print c / n }')"
}

echo "==> wrk -t2 -c$connections -d${duration}s, perf record -F 1999 -g"
profile olivine "$pid" "$base$path"
profile reference "$reference_pid" "http://127.0.0.1:$reference_port$path"

# Self time by component: each sample's innermost function, named by its symbol.
components() {
  perf report -q -i "$data/$1.perf" --no-children --sort sym --stdio -g none 2>/dev/null |
    awk '
      /%/ {
        share = $1; sub(/%/, "", share)
        line = $0
        c = "other (olivine and its dependencies)"
        if (line ~ /\[k\]/) c = "Linux: network stack, syscalls, scheduler"
        else if (line ~ /tower_http::trace|tracing_subscriber|tracing_core|tracing::/) c = "tracing (TraceLayer, spans)"
        else if (line ~ /compress|brotli|flate/) c = "compression layer"
        else if (line ~ /metrics_exporter|metrics::|metrics_util|olivine::telemetry|quanta/) c = "metrics"
        else if (line ~ /olivine::http::front|olivine::ratelimit|governor|olivine::http::security/) c = "front layer: limits, security headers"
        else if (line ~ /olivine::http::caching|olivine::catalog|olivine::cache|moka/) c = "the handler: cache lookup, ETag"
        else if (line ~ /axum::|matchit|tower::|utoipa/) c = "axum routing, tower"
        else if (line ~ /hyper|httparse|http::header|h2::/) c = "hyper: HTTP/1 parsing and writing"
        else if (line ~ /tokio|mio::/) c = "tokio runtime and I/O"
        else if (line ~ /malloc|free|realloc|calloc|_int_|cfree|mi_|jemalloc|__rust_alloc|__rust_dealloc|alloc::/) c = "allocation"
        else if (line ~ /memcpy|memmove|memset|memcmp|strlen|\[\.\] __/) c = "libc: memcpy and friends"
        else if (line ~ /serde|bytes::/) c = "bytes, serde"
        total[c] += share
      }
      END { for (c in total) printf "%6.1f%%  %s\n", total[c], c }' | sort -rn
}

echo
echo "==> Olivine: share of CPU samples by component (self time)"
components olivine
echo
echo "==> the reference: share of CPU samples by component (self time)"
components reference
echo
echo "==> Olivine: the 25 functions with the most self time"
perf report -q -i "$data/olivine.perf" --no-children --sort sym --stdio -g none 2>/dev/null | head -25
