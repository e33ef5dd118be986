# What the wrk benchmarks share (sourced).

# only_200_lua [DELAY_MS]: prints a wrk script that counts every answer other than 200
# across wrk's threads (wrk itself counts a 3xx as a success: a redirect to a sign-in page
# would be throughput) and prints "answers other than 200: N" at the end. With DELAY_MS,
# each connection waits that long before each request (a shoppers' pace, not a flood).
only_200_lua() {
  cat <<LUA
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not_200 = 0 end
${1:+function delay() return $1 end}
function response(status, headers, body)
  if status ~= 200 then not_200 = not_200 + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("not_200") end
  io.write("answers other than 200: " .. total .. "\n")
end
LUA
}

# require_only_200 LABEL OUTPUT: fails the benchmark (printing wrk's OUTPUT) unless the
# script above counted no answer other than 200.
require_only_200() {
  if ! grep -q "^answers other than 200: 0$" <<<"$2"; then
    echo "$2" >&2
    echo "error: $1: some answers were not 200" >&2
    exit 1
  fi
}
