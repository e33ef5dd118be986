# What the PostgreSQL benchmarks share (sourced): the server's address, its client
# installed when missing, and waiting for a kernel to be ready.
pg_host="${PGHOST:-127.0.0.1}"
pg_port="${PGPORT:-5432}"
pg_user="${PGUSER:-postgres}"

if ! command -v psql >/dev/null 2>&1; then
  echo "==> installing the PostgreSQL client (Debian package)"
  apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null
fi
if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi

psql_admin() { psql -X -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -c "$1"; }

# wait_ready PORT PID LOG: until the kernel answers /readyz; its log if it died.
wait_ready() {
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3"; exit 1; }
    sleep 0.1
  done
}
