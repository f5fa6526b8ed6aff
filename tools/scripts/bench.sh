#!/usr/bin/env bash
# Runs every benchmark against release binaries and writes the report (docs/BENCHMARKS.md).
# Benchmarks measure side by side in one run; nothing else should be building meanwhile.
set -euo pipefail
BIN=${BIN:-.build/release}
BENCH_OUT=${BENCH_OUT:-bench/out}
BENCH_EVENTS=${BENCH_EVENTS:-1000000}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bifrost-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$BENCH_OUT"

echo "== eventlog: $BENCH_EVENTS events"
"$BIN/bifrost-bench" eventlog --data "$SCRATCH" --events "$BENCH_EVENTS" --json | tee "$BENCH_OUT/eventlog.json"

echo "== compaction: bounded retention steps over 200,000 events"
"$BIN/bifrost-bench" compaction --data "$SCRATCH" --json | tee "$BENCH_OUT/compaction.json"

echo "== replication: 3 nodes, catch-up of $BENCH_EVENTS events"
"$BIN/bifrost-bench" replication --nodes 3 --events "$BENCH_EVENTS" --rate 5000 --seconds 10 --json | tee "$BENCH_OUT/replication.json"

echo "== gateway: fixed-body upstream direct vs nginx vs a bare NIO pass-through vs one node vs a 3-node cluster node"
"$BIN/bifrost-bench" gateway --seconds "${BENCH_GATEWAY_SECONDS:-6}" --rounds "${BENCH_GATEWAY_ROUNDS:-3}" --connections 64 --json | tee "$BENCH_OUT/gateway.json"

python3 tools/scripts/bench_report.py "$BENCH_OUT" docs/BENCHMARKS.md
echo "report: docs/BENCHMARKS.md"
