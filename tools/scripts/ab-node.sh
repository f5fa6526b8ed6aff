#!/usr/bin/env bash
# Interleaved A/B of bifrost binaries as one node: each round runs every binary in turn against
# the same fixed-body nginx upstream with wrk, and prints req/s and CPU per request (user +
# system time of the node process over the requests it served). Credit a change only when every
# round shows it.
#
#   tools/scripts/ab-node.sh ROUNDS SECONDS CONNECTIONS LABEL=path/to/bifrost [LABEL=path ...]
#
# AB_CLUSTER=1 runs the node as a one-node cluster (`--cluster`, as `make bench` does), with a
# fresh cluster key.
set -euo pipefail
rounds=$1 seconds=$2 conns=$3
shift 3
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 2; }
[ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install -y nginx-light)" >&2; exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/bifrost-ab.XXXXXX")
nginx_pid=""
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill -9 "$node_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

source "$(dirname "$0")/ab-upstream.sh"
start_upstream
api=$((21000 + RANDOM % 9000))
cat > "$scratch/config.json" <<CONF
{$(ab_providers),
 "cluster": {"bind_address": "127.0.0.1:$api", "gossip": {"port": $((api + 10000))}}}
CONF
write_post_lua
cluster_args=()
if [ "${AB_CLUSTER:-0}" = 1 ]; then
  cluster_args=(--cluster --node-id ab-node-1 ${AB_EXTRA:-})
  BIFROST_CLUSTER_KEY=$(head -c 32 /dev/urandom | base64)
  export BIFROST_CLUSTER_KEY
fi
ticks=$(getconf CLK_TCK)
threads=$((conns < 2 ? conns : 2))
cpu() { awk -v t="$ticks" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.6f", (f[12] + f[13]) / t }' "/proc/$1/stat"; }

for round in $(seq 1 "$rounds"); do
  for pair in "$@"; do
    label=${pair%%=*} bin=${pair#*=}
    rm -rf "$scratch/data"
    "$bin" serve "${cluster_args[@]}" --config "$scratch/config.json" --data "$scratch/data" --log-level error >/dev/null 2>&1 &
    node_pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api/health" >/dev/null && break; sleep 0.1; done
    wrk -t "$threads" -c "$conns" -d 2s -s "$scratch/post.lua" "http://127.0.0.1:$api/v1/chat/completions" >/dev/null
    before=$(cpu "$node_pid")
    out=$(wrk -t "$threads" -c "$conns" -d "${seconds}s" --latency -s "$scratch/post.lua" "http://127.0.0.1:$api/v1/chat/completions")
    after=$(cpu "$node_pid")
    requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    errors=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
    awk -v r="$round" -v l="$label" -v rps="$rps" -v n="$requests" -v b="$before" -v a="$after" -v e="${errors:-0}" -v p="$p50" \
      'BEGIN { printf "round %d %-10s %8.0f req/s  p50 %-9s %6.1f µs CPU/request  %s errors\n", r, l, rps, p, (a - b) / n * 1e6, e }'
    kill -TERM "$node_pid"; wait "$node_pid" 2>/dev/null || true
    node_pid=""
  done
done
