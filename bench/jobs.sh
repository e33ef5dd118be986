#!/usr/bin/env bash
# Job queue benchmark (issue 12): two kernel nodes on one PostgreSQL database lease
# from one queue (kernel/examples/jobs_bench.rs). Prints jobs per second for a no-op job
# and for a job that writes one row and completes in the same transaction, and checks
# that no job ran twice.
#
#   bench/jobs.sh                          # 20000 jobs, 8 workers per node, 3 runs
#   JOBS=50000 JOB_WORKERS=16 RUNS=5 bench/jobs.sh
#
# Needs PostgreSQL at PGHOST:PGPORT (127.0.0.1:5432, trust auth, user postgres); the run
# gets a fresh database that is dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh

echo "==> cargo build --release --example jobs_bench"
cargo build --release -p olivine-kernel --example jobs_bench

db="olivine_jobs_bench_$$"
psql_admin "CREATE DATABASE $db"
trap 'psql_admin "DROP DATABASE IF EXISTS $db" || true' EXIT
psql_admin "CHECKPOINT"
DATABASE_URL="postgres://$pg_user@$pg_host:$pg_port/$db" RUST_LOG="${RUST_LOG:-warn}" \
  target/release/examples/jobs_bench
