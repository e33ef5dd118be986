#!/usr/bin/env bash
# Product media benchmark (issue 19), against a release build on the embedded store:
#   1. the variants of a 12-megapixel JPEG, format by format (kernel/examples/media_bench.rs:
#      decode, resize to 320/640/1024/1600 and encode, each format timed alone);
#   2. one upload through the API: the answer's latency, and the time until the job has
#      made every variant (status `ready`);
#   3. cached media requests (/media/<hash>/640.webp) per second and their p99 (wrk);
#   4. the product page's throughput and p99 alone, then while 20 uploads of the photo (to
#      another product) are processed: flooded (wrk as fast as it gets answers) and at a
#      shoppers' pace (each connection waits DELAY_MS, 4 by default, before a request);
#   5. the product page beside the same image work in a separate idle-class process, which
#      tells the cost of sharing the cores from the cost of how the server schedules it.
#
#   bench/media.sh                     # 20 s per wrk run, 64 connections
#   DURATION=10s AVIF_SPEED=8 bench/media.sh
#   OLIVINE_BIN=target/release/olivine bench/media.sh   # skip the build (needs the example too)
#   OLIVINE_MEDIA_WORKERS=0 bench/media.sh              # a cluster's shopper node: step 4 with
#                                                       # the uploads left to a media node
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/wrk.lua.sh

duration="${DURATION:-20s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
port="${PORT:-18095}"
slug="${SLUG:-magnesium-glycinate}"
speed="${AVIF_SPEED:-6}"
paced_delay="${DELAY_MS:-4}"
token="bench-admin-token-0123456789"

for tool in wrk curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "==> installing $tool (Debian package)"
    apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null
  fi
done

bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release (olivine, examples/media_bench)"
  cargo build --release -p olivine-kernel --bin olivine --example media_bench
fi
# The example beside the binary (OLIVINE_BIN from another target dir takes its own).
media_bench="$(dirname "$bin")/examples/media_bench"

data="$(mktemp -d)"
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
pid=""

echo "==> a 12-megapixel JPEG (4000 x 3000: gradients and fine noise, quality 90)"
"$media_bench" --make-photo "$data/photo.jpg"
ls -l "$data/photo.jpg" | awk '{ print $5 " bytes" }'

echo
echo "==> 1. variants, format by format (AVIF speed $speed)"
"$media_bench" "$data/photo.jpg" "$speed"

OLIVINE_DATA_DIR="$data/store" OLIVINE_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  OLIVINE_ADMIN_TOKEN="$token" OLIVINE_MEDIA_AVIF_SPEED="$speed" \
  OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off \
  "$bin" serve >"$data/serve.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/serve.log"; exit 1; }
  sleep 0.1
done
auth=(-H "Authorization: Bearer $token")
# The uploads go to another product than the page measured: 21 images on that page would
# measure a bigger page, not the cost of making variants.
product_id="$(curl -fs "${auth[@]}" "$base/api/v1/admin/products?per_page=100" |
  python3 -c "import json,sys; print(next(p['id'] for p in json.load(sys.stdin)['items'] if p['slug'] != '$slug'))")"

# upload FILE: prints the image's JSON
upload() {
  curl -fs "${auth[@]}" -F "file=@$1;type=image/jpeg" -F "alt=bench" \
    "$base/api/v1/admin/products/$product_id/images"
}
processing() {
  curl -fs "${auth[@]}" "$base/api/v1/admin/products/$product_id/images" |
    python3 -c "import json,sys; print(sum(1 for i in json.load(sys.stdin) if i['status'] == 'processing'))"
}
now_ms() { date +%s%3N; }

echo
echo "==> 2. one upload through the API"
started="$(now_ms)"
image="$(upload "$data/photo.jpg")"
answered="$(now_ms)"
hash="$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['hash'])" "$image")"
if [ "${OLIVINE_MEDIA_WORKERS:-1}" = "0" ]; then
  echo "upload answered in $((answered - started)) ms (OLIVINE_MEDIA_WORKERS=0: no variants made here)"
else
  while [ "$(processing)" != "0" ]; do sleep 0.05; done
  ready="$(now_ms)"
  echo "upload answered in $((answered - started)) ms; every variant made $((ready - started)) ms after the upload began"
fi

echo
url="$base/media/$hash/640.webp"
if [ "${OLIVINE_MEDIA_WORKERS:-1}" = "0" ]; then
  echo "==> 3. cached media: skipped (OLIVINE_MEDIA_WORKERS=0 made no variant)"
else
  echo "==> 3. cached media: wrk -t$threads -c$connections -d$duration --latency $url"
  curl -fsS -D - -o /dev/null "$url" | grep -i -E '^(content-type|cache-control|etag|content-length):'
  wrk -t"$threads" -c"$connections" -d"$duration" --latency "$url"
fi

page="$base/p/$slug"
# Every answer that is not 200 fails a run; paced, a connection waits DELAY_MS before each
# request.
only_200_lua >"$data/flood.lua"
only_200_lua "$paced_delay" >"$data/paced.lua"
# page_run LABEL SCRIPT: wrk on the product page; prints rate, p50 and p99.
page_run() {
  local out
  out="$(wrk -t"$threads" -c16 -d"$duration" --latency -s "$2" "$page")"
  require_only_200 "$1" "$out"
  printf '%-52s %10s req/s   p50 %8s   p99 %8s\n' "$1" \
    "$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")" \
    "$(awk '$1 == "50%" { print $2 }' <<<"$out")" \
    "$(awk '$1 == "99%" { print $2 }' <<<"$out")"
}

echo
echo "==> 4. the product page, $page, wrk -t$threads -c16 -d$duration: as fast as it answers (flood),"
echo "       and at a shoppers' pace (each connection waits ${paced_delay} ms before each request)"
page_run "alone, flood" "$data/flood.lua"
page_run "alone, paced" "$data/paced.lua"

# Twenty different files (a byte after the end-of-image marker changes the hash, not the picture).
for i in $(seq 1 20); do
  { cat "$data/photo.jpg"; printf '%02d' "$i"; } >"$data/photo-$i.jpg"
done
uploads_began="$(now_ms)"
for i in $(seq 1 20); do upload "$data/photo-$i.jpg" >/dev/null; done
echo "20 uploads answered in $(( $(now_ms) - uploads_began )) ms; pending: $(processing)"
page_run "while 20 uploads are processed, flood" "$data/flood.lua"
echo "pending: $(processing)"
page_run "while 20 uploads are processed, paced" "$data/paced.lua"
echo "pending: $(processing)"
if [ "${OLIVINE_MEDIA_WORKERS:-1}" = "0" ]; then
  # A shopper node of a cluster (docs/MEDIA.md): the variants are another node's work, so
  # the runs above measured the page beside pending uploads only.
  echo "OLIVINE_MEDIA_WORKERS=0: this node makes no variants; $(processing) uploads left to a media node"
else
  while [ "$(processing)" != "0" ]; do sleep 0.5; done
  echo "all 20 made $(( $(now_ms) - uploads_began )) ms after the first upload began (OLIVINE_MEDIA_WORKERS=${OLIVINE_MEDIA_WORKERS:-1}, OLIVINE_MEDIA_NICE=${OLIVINE_MEDIA_NICE:-10})"
fi

echo
echo "==> 5. the same image work in another process (examples/media_bench in a loop, Linux's"
echo "       idle class): what sharing two cores with it costs whoever does it"
beside_pid=""
if command -v chrt >/dev/null 2>&1; then
  ( while true; do chrt -i 0 "$media_bench" "$data/photo.jpg" "$speed" >/dev/null 2>&1 || true; done ) &
  beside_pid=$!
  sleep 1
  page_run "beside an idle-class image process, flood" "$data/flood.lua"
  page_run "beside an idle-class image process, paced" "$data/paced.lua"
  kill "$beside_pid" 2>/dev/null || true
  pkill -f "$media_bench" 2>/dev/null || true
else
  echo "(skipped: chrt is not installed)"
fi
