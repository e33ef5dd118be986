#!/usr/bin/env bash
# Two builds of `olivine` against each other on the cached product JSON, with the bare
# axum reference beside them: all three run at once (embedded store, demo catalog, the
# catalog limit counted but never reached, as bench/profile.sh runs them) and wrk asks
# each in turn, ROUNDS times, while `perf stat` counts the server's CPU time. Prints, per
# round, each one's requests/s and CPU time a request. On a noisy machine only rounds in
# one sitting compare; the same binary can vary by a fifth between runs.
#
#   bench/compare.sh /tmp/olivine-before target/release/olivine
#   ROUNDS=6 DURATION=10s REFERENCE_BIN=target/release/examples/reference_server bench/compare.sh A B
#
# Needs wrk and perf (Debian: wrk linux-perf); perf as root or with
# kernel.perf_event_paranoid at most 1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 2 ]; then
  echo "usage: bench/compare.sh OLIVINE_BIN_A OLIVINE_BIN_B" >&2
  exit 2
fi
rounds="${ROUNDS:-4}"
duration="${DURATION:-8s}"
port="${PORT:-18500}"
path="/api/v1/products/${SLUG:-magnesium-glycinate}"
reference_bin="${REFERENCE_BIN:-$(dirname "$2")/examples/reference_server}"
for tool in wrk perf curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed (apt-get install wrk linux-perf curl)" >&2; exit 1; }
done

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
names=(A B reference)
ports=("$port" $((port + 1)) $((port + 2)))

for i in 0 1; do
  mkdir "$work/$i"
  OLIVINE_DATA_DIR="$work/$i" OLIVINE_ADDR="127.0.0.1:${ports[$i]}" RUST_LOG=warn \
    OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=4000000000/1m "${@:$((i + 1)):1}" serve \
    >"$work/$i.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:${ports[$i]}/readyz" >/dev/null 2>&1 && break
    kill -0 "${pids[$i]}" 2>/dev/null || { cat "$work/$i.log"; exit 1; }
    sleep 0.1
  done
  # The demo catalog's events handled first, as a store that has been running.
  for _ in $(seq 1 300); do
    [ "$(curl -fs "http://127.0.0.1:${ports[$i]}/metrics" | awk '$1 == "olivine_bus_pending_events" { print $2 }')" = "0" ] && break
    sleep 0.1
  done
done
curl -fs -D "$work/headers" -o "$work/body" "http://127.0.0.1:${ports[0]}$path"
"$reference_bin" "127.0.0.1:${ports[2]}" "$path" "$work/body" "$work/headers" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:${ports[2]}$path" && break
  sleep 0.1
done

# wrk counts only answers of 400 and up as errors (checked after each run); a 3xx it
# would count as throughput, so each server's answer is checked to be the 200 first.
for i in 0 1 2; do
  status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${ports[$i]}$path")"
  if [ "$status" != 200 ]; then
    echo "error: ${names[$i]} answered $status, not 200" >&2
    exit 1
  fi
done

echo "==> A: $1"
echo "==> B: $2"
echo "==> wrk -t2 -c64 -d$duration on $path, each in turn, $rounds rounds"
for round in $(seq 1 "$rounds"); do
  line="round $round:"
  for i in 0 1 2; do
    perf stat -x, -e task-clock -p "${pids[$i]}" -o "$work/stat" -- \
      wrk -t2 -c64 -d"$duration" "http://127.0.0.1:${ports[$i]}$path" >"$work/wrk"
    if grep -q "Non-2xx" "$work/wrk"; then
      echo "error: ${names[$i]} answered other than 200:" >&2
      cat "$work/wrk" >&2
      exit 1
    fi
    line="$line  ${names[$i]} $(awk -F, '/task-clock/ { ms = $1 } END { print ms }' "$work/stat" |
      awk -v n="$(awk '/requests in/ { print $1 }' "$work/wrk")" \
        -v rps="$(awk '$1 == "Requests/sec:" { print $2 }' "$work/wrk")" \
        '{ printf "%.0f req/s %.1f µs", rps, $1 * 1000 / n }')"
  done
  echo "$line"
done
