#!/usr/bin/env bash
# The event-log demo behind `make run`: a durable node directory that grows on every run,
# inspected with the operator tools.
set -euo pipefail
BIN=${BIN:-.build/debug}
STATE_DIR=${STATE_DIR:-.bifrost}
DATA="$STATE_DIR/demo/bifrost-node-1"
mkdir -p "$DATA"

echo "== writing 200000 events (local appends + two peers' events) into $DATA"
"$BIN/bifrost-bench" populate --data "$DATA" --node bifrost-node-1 --events 200000

echo
echo "== bifrost-dump $DATA --stats"
"$BIN/bifrost-dump" "$DATA" --stats

echo
echo "== the latest weight changes (bifrost-dump --kind weight.changed --format table)"
"$BIN/bifrost-dump" "$DATA" --kind weight.changed --format table | tail -n 5

echo
echo "== views rebuilt from the log (bifrost-replay --view weights --view summary)"
"$BIN/bifrost-replay" "$DATA" --view weights --view summary --pretty

echo
echo "== audit: checkpoint and digests against the log (bifrost-replay --verify)"
"$BIN/bifrost-replay" "$DATA" --verify

echo
echo "Data kept in $DATA; run again to append more, or inspect it with $BIN/bifrost-dump."
