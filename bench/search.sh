#!/usr/bin/env bash
# Search benchmark: a release kernel on the embedded SQLite store with a synthetic
# catalog of VARIANTS variants (`olivine seed --synthetic`, 1 to 4 a product, always the
# same catalog for the same size). Prints:
#   - the seed time and the full index build time: `olivine search reindex` with the store
#     stopped, and the build a starting node does (its "search index built" log line);
#   - search latency (p50/p99) for queries of one word and three facets (words and facets
#     vary by request), with one connection (the time one search takes) and saturated on
#     two cores (searches per second);
#   - the same for suggest (what the search box asks for as the shopper types);
#   - edit-to-visible: EDITS times, rename a product through the admin API, then poll
#     /api/v1/search every POLL_MS for the new name until the product is found.
# The load tool is wrk, as in bench/load.sh, with a Lua script that cycles through the
# request paths; the API rate limits are off (one address); any error answer fails the run.
#
#   bench/search.sh                               # 100,000 variants, 20 s per wrk run
#   VARIANTS=20000 DURATION=10s bench/search.sh
#   OLIVINE_BIN=/path/to/olivine bench/search.sh  # A/B another build
set -euo pipefail
cd "$(dirname "$0")/.."

variants="${VARIANTS:-100000}"
duration="${DURATION:-20s}"
connections="${CONNECTIONS:-16}"
threads="${THREADS:-2}"
edits="${EDITS:-50}"
poll_ms="${POLL_MS:-10}"
port="${PORT:-18095}"

for tool in wrk curl jq; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "==> installing $tool (Debian package)"
    apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null
  fi
done

bin="${OLIVINE_BIN:-target/release/olivine}"
if [ -z "${OLIVINE_BIN:-}" ]; then
  echo "==> cargo build --release"
  cargo build --release -p olivine-kernel --bin olivine
fi

data="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
export OLIVINE_DATA_DIR="$data"
unset DATABASE_URL
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# The log lines, without colours.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

echo
echo "==> olivine seed --synthetic $variants (load average before: $(loadavg))"
started=$(now_ms)
"$bin" seed --synthetic "$variants" 2>"$data/seed.log" | tail -n 1
echo "seed: $(($(now_ms) - started)) ms wall"

echo
echo "==> olivine search reindex (the store stopped)"
RUST_LOG=info "$bin" search reindex 2>"$data/reindex.log" | tail -n 1
plain "$data/reindex.log" | grep -o 'search index built.*' || true

token="bench-admin-token-$RANDOM$RANDOM"
OLIVINE_ADDR="127.0.0.1:$port" OLIVINE_ADMIN_TOKEN="$token" OLIVINE_SEED_DEMO=false \
  OLIVINE_RATE_LIMIT_API=off OLIVINE_RATE_LIMIT_CATALOG=off OLIVINE_WATCH_PLUGINS=false \
  RUST_LOG="warn,olivine::search=info" \
  "$bin" serve >"$data/kernel.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  grep -q "search index built" "$data/kernel.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/kernel.log"; exit 1; }
  sleep 0.1
done
echo
echo "==> the node's build at start"
plain "$data/kernel.log" | grep -o 'search index built.*'
for _ in $(seq 1 300); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "index on disk: $(du -sh "$data/search" | cut -f1); server RSS: $(($(ps -o rss= -p "$pid") / 1024)) MiB"

# A word and three facets that go with it (most searches find something).
# (No product has melatonin: a search that finds nothing offers a correction.)
supplement_words=(magnesium vitamin ashwagandha zinc omega collagen turmeric probiotic
  melatonin biotin elderberry rhodiola capsules gummies iron valerian)
supplement_facets=(
  "type=supplement&vegan=true&free_from=gluten"
  "form=capsules&in_stock=true&price=1000-2000"
  "category=supplements&free_from=dairy&in_stock=true"
  "in_stock=true&price=1000-2000&vegan=true"
  "free_from=gluten&price=2000-3000&in_stock=true"
  "free_from=soy&in_stock=true&price=3000-5000"
)
skincare_words=(serum cleanser retinol niacinamide moisturiser hyaluronic toner balm
  sunscreen peptide squalane mask gentle brightening caffeine ceramide)
skincare_facets=(
  "type=skincare&skin_type=oily&in_stock=true"
  "free_from=fragrance&skin_type=sensitive&price=2000-3000"
  "type=skincare&vegan=true&in_stock=true"
  "skin_type=dry&in_stock=true&price=1000-2000"
  "category=skincare&free_from=fragrance&vegan=true"
  "in_stock=true&price=3000-5000&skin_type=combination"
)
search_paths=()
for i in "${!supplement_words[@]}"; do
  for j in "${!supplement_facets[@]}"; do
    search_paths+=("/api/v1/search?q=${supplement_words[$i]}&${supplement_facets[$j]}")
  done
done
for i in "${!skincare_words[@]}"; do
  for j in "${!skincare_facets[@]}"; do
    search_paths+=("/api/v1/search?q=${skincare_words[$i]}&${skincare_facets[$j]}")
  done
done
suggest_paths=()
for q in mag magn magnes vit vitam ash ashwa zin omeg coll turm prob ser seru clea cleans \
  ret retin niac moist hyal ton sun pept squa vitamin+c magnesium+gly night+cre \
  magnesum vitamn serim retinl; do
  suggest_paths+=("/api/v1/search/suggest?q=$q")
done

# Every path answers 200 before it is timed; how many find nothing.
check() {
  local empty=0 path status
  for path in "$@"; do
    status="$(curl -s -o "$data/answer.json" -w '%{http_code}' "$base$path")"
    if [ "$status" != 200 ]; then
      echo "error: $path answered $status: $(head -c 300 "$data/answer.json")" >&2
      exit 1
    fi
    if jq -e '(.total // (.products | length)) == 0' "$data/answer.json" >/dev/null; then
      empty=$((empty + 1))
    fi
  done
  echo "$# different requests, $empty of them find nothing"
}

# A wrk script that sends the paths in turn.
script() {
  local file="$data/$1.lua" path
  shift
  {
    echo "local paths = {"
    for path in "$@"; do echo "  \"$path\","; done
    echo "}"
    echo "local i = 0"
    echo "request = function()"
    echo "  i = i + 1"
    echo "  return wrk.format(\"GET\", paths[(i % #paths) + 1])"
    echo "end"
  } >"$file"
  echo "$file"
}

# run NAME SCRIPT THREADS CONNECTIONS
run() {
  local out
  echo
  echo "==> $1: wrk -t$3 -c$4 -d$duration --latency (load average before: $(loadavg))"
  out="$(wrk -t"$3" -c"$4" -d"$duration" --latency -s "$2" "$base")"
  echo "$out" | grep -E "Requests/sec|^ +(50|75|90|99)%|requests in|Non-2xx|Socket errors" || true
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "error: $1: some answers were errors; the figures are not the store's" >&2
    exit 1
  fi
}

echo
echo "==> search: a word and three facets"
check "${search_paths[@]}"
search_script="$(script search "${search_paths[@]}")"
echo "==> suggest: prefixes and typos"
check "${suggest_paths[@]}"
suggest_script="$(script suggest "${suggest_paths[@]}")"

run "search, one connection" "$search_script" 1 1
run "search, saturated" "$search_script" "$threads" "$connections"
run "suggest, one connection" "$suggest_script" 1 1
run "suggest, saturated" "$suggest_script" "$threads" "$connections"

echo
echo "==> edit to visible: $edits renames through the admin API, polling search every $poll_ms ms"
curl -fs "$base/api/v1/products?per_page=100&page=7" |
  jq -r --argjson n "$edits" '.items[:$n][] | "\(.id) \(.slug)"' >"$data/products.txt"
samples=()
n=0
while read -r id slug; do
  n=$((n + 1))
  # A word no product has (letters only, so no stemming or digit rule gets in the way).
  word="zqv$(printf '%s' "$n" | tr '0-9' 'a-j')probe"
  started=$(now_ms)
  status="$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\": \"Renamed $word\"}" \
    "$base/api/v1/admin/products/$id")"
  [ "$status" = 200 ] || { echo "error: PATCH product $id answered $status" >&2; exit 1; }
  until [[ "$(curl -fs "$base/api/v1/search?q=$word&per_page=1")" == *"\"$slug\""* ]]; do
    if (($(now_ms) - started > 10000)); then
      echo "error: $slug was not found as $word within 10 s" >&2
      exit 1
    fi
    sleep "$(printf '0.%03d' "$poll_ms")"
  done
  samples+=($(($(now_ms) - started)))
done <"$data/products.txt"
sorted=($(printf '%s\n' "${samples[@]}" | sort -n))
count=${#sorted[@]}
at() { local i=$(((count * $1 + 99) / 100 - 1)); echo "${sorted[$((i < 0 ? 0 : i))]}"; }
echo "edits: $count; edit to visible p50 $(at 50) ms, p90 $(at 90) ms, p99 $(at 99) ms, max ${sorted[$((count - 1))]} ms"
echo
echo "load average after: $(loadavg)"
