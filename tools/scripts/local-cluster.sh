#!/usr/bin/env bash
# A 3-node Bifrost cluster on this host: API 8080-8082, gossip/sync 7946-7948.
# Credentials and data live in $STATE_DIR (kept between runs: the nodes are durable).
# Ctrl-C stops every node gracefully.
set -euo pipefail
BIN=${BIN:-.build/debug}
STATE_DIR=${STATE_DIR:-.bifrost}
NODES=${NODES:-3}
mkdir -p "$STATE_DIR/cluster"
ENV_FILE="$STATE_DIR/cluster.env"
if [ ! -f "$ENV_FILE" ]; then
  echo "BIFROST_CLUSTER_KEY=$("$BIN/bifrost" keygen)" > "$ENV_FILE"
  chmod 600 "$ENV_FILE"
fi
set -a; . "$ENV_FILE"; set +a

pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping the cluster..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped; data kept in $STATE_DIR/cluster"
  exit 0
}
trap stop INT TERM

for i in $(seq 1 "$NODES"); do
  api=$((8079 + i)); gossip=$((7945 + i))
  peers=""
  for j in $(seq 1 "$NODES"); do [ "$j" = "$i" ] || peers="$peers,127.0.0.1:$((8079 + j))"; done
  "$BIN/bifrost" serve --cluster --node-id "bifrost-node-$i" --bind "127.0.0.1:$api" --gossip-port "$gossip" \
    --peers "${peers#,}" --data "$STATE_DIR/cluster/bifrost-node-$i" 2>&1 | sed -u "s/^/[node-$i] /" &
  pids+=($!)
done

sleep 2
cat <<MSG

Bifrost cluster of $NODES nodes is up:
$(for i in $(seq 1 "$NODES"); do echo "  bifrost-node-$i  http://127.0.0.1:$((8079 + i))   gossip 127.0.0.1:$((7945 + i))"; done)

Try:
  curl -s http://127.0.0.1:8080/cluster/nodes
  curl -s http://127.0.0.1:8081/cluster/metrics
  curl -s http://127.0.0.1:8082/health
  $BIN/bifrost-dump $STATE_DIR/cluster/bifrost-node-1 --stats

Ctrl-C stops every node.
MSG
wait
