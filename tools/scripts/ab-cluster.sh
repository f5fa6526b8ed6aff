#!/usr/bin/env bash
# Interleaved A/B of bifrost binaries as a 3-node cluster: each round starts three nodes of every
# binary in turn behind the same fixed-body nginx upstream, loads node 1 with wrk, and prints
# req/s and CPU per request (user + system time of all three node processes over the requests
# served). Credit a change only when every round shows it.
#
#   tools/scripts/ab-cluster.sh ROUNDS SECONDS CONNECTIONS LABEL=path/to/bifrost [LABEL=path ...]
set -euo pipefail
rounds=$1 seconds=$2 conns=$3
shift 3
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 2; }
[ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install -y nginx-light)" >&2; exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/bifrost-abc.XXXXXX")
nginx_pid=""
node_pids=()
stop_nodes() {
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  node_pids=()
}
cleanup() {
  for pid in "${node_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

source "$(dirname "$0")/ab-upstream.sh"
start_upstream
api=$((21000 + RANDOM % 8000))
cat > "$scratch/config.json" <<CONF
{$(ab_providers),
 "cluster": {"gossip": {"interval": "1s", "timeout": "5s"}}}
CONF
write_post_lua
ticks=$(getconf CLK_TCK)
threads=$((conns < 2 ? conns : 2))
cpu() { for pid in "$@"; do awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$pid/stat"; done | awk -v t="$ticks" '{ s += $1 } END { printf "%.6f", s / t }'; }
key=$(head -c 32 /dev/urandom | base64)

for round in $(seq 1 "$rounds"); do
  for pair in "$@"; do
    label=${pair%%=*} bin=${pair#*=}
    rm -rf "$scratch/data"
    for i in 0 1 2; do
      peers=""
      for j in 0 1 2; do [ "$j" = "$i" ] || peers="$peers,127.0.0.1:$((api + j))"; done
      BIFROST_CLUSTER_KEY=$key "$bin" serve --cluster --config "$scratch/config.json" --node-id "ab-node-$i" \
        --bind "127.0.0.1:$((api + i))" --gossip-port "$((api + 1000 + i))" --peers "${peers#,}" \
        --data "$scratch/data/ab-node-$i" --log-level error >/dev/null 2>&1 &
      node_pids+=($!)
    done
    for _ in $(seq 1 200); do
      alive=$(curl -sf "http://127.0.0.1:$api/cluster/nodes" 2>/dev/null | grep -o '"status":"alive"' | wc -l || true)
      [ "$alive" = 3 ] && break
      sleep 0.1
    done
    wrk -t "$threads" -c "$conns" -d 2s -s "$scratch/post.lua" "http://127.0.0.1:$api/v1/chat/completions" >/dev/null
    before=$(cpu "${node_pids[@]}")
    out=$(wrk -t "$threads" -c "$conns" -d "${seconds}s" --latency -s "$scratch/post.lua" "http://127.0.0.1:$api/v1/chat/completions")
    after=$(cpu "${node_pids[@]}")
    requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    errors=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
    awk -v r="$round" -v l="$label" -v rps="$rps" -v n="$requests" -v b="$before" -v a="$after" -v e="${errors:-0}" -v p="$p50" \
      'BEGIN { printf "round %d %-10s %8.0f req/s  p50 %-9s %6.1f µs CPU/request (3 nodes)  %s errors\n", r, l, rps, p, (a - b) / n * 1e6, e }'
    stop_nodes
  done
done
