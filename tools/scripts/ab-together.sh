#!/usr/bin/env bash
# A/B of two bifrost binaries run at the same time: each serves as one node behind the same
# fixed-body nginx upstream under its own wrk, so whatever else the machine does at that moment
# (a neighbour, a frequency change) falls on both alike. Each round restarts both nodes, in
# alternating start order, and prints CPU per request (user + system time of each node over the
# requests it served) and req/s for each, then the B/A ratio of CPU per request. Credit a change
# only when the ratio is on the same side of 1 in every round.
#
#   tools/scripts/ab-together.sh ROUNDS SECONDS CONNECTIONS A=path/to/bifrost B=path/to/bifrost
#
# CONNECTIONS is per node.
set -euo pipefail
rounds=$1 seconds=$2 conns=$3
label_a=${4%%=*} bin_a=${4#*=}
label_b=${5%%=*} bin_b=${5#*=}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 2; }
[ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install -y nginx-light)" >&2; exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/bifrost-abt.XXXXXX")
nginx_pid=""
pid_a="" pid_b=""
cleanup() {
  for pid in $pid_a $pid_b; do kill -9 "$pid" 2>/dev/null || true; done
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

source "$(dirname "$0")/ab-upstream.sh"
start_upstream
api=$((21000 + RANDOM % 8000))
for side in a b; do
  port=$api
  [ "$side" = b ] && port=$((api + 1))
  cat > "$scratch/config-$side.json" <<CONF
{$(ab_providers),
 "cluster": {"bind_address": "127.0.0.1:$port", "gossip": {"port": $((port + 10000))}}}
CONF
done
write_post_lua
ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.6f", (f[12] + f[13]) / t }' "/proc/$1/stat"; }
start() { # side binary
  rm -rf "$scratch/data-$1"
  "$2" serve --config "$scratch/config-$1.json" --data "$scratch/data-$1" --log-level error >/dev/null 2>&1 &
  if [ "$1" = a ]; then pid_a=$!; else pid_b=$!; fi
}
url_a="http://127.0.0.1:$api/v1/chat/completions" url_b="http://127.0.0.1:$((api + 1))/v1/chat/completions"

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    start a "$bin_a"; start b "$bin_b"
  else
    start b "$bin_b"; start a "$bin_a"
  fi
  for port in $api $((api + 1)); do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  done
  wrk -t 1 -c "$conns" -d 2s -s "$scratch/post.lua" "$url_a" >/dev/null &
  warm_a=$!
  wrk -t 1 -c "$conns" -d 2s -s "$scratch/post.lua" "$url_b" >/dev/null
  wait "$warm_a"
  before_a=$(cpu "$pid_a") before_b=$(cpu "$pid_b")
  wrk -t 1 -c "$conns" -d "${seconds}s" -s "$scratch/post.lua" "$url_a" >"$scratch/out-a" &
  wrk_a=$!
  wrk -t 1 -c "$conns" -d "${seconds}s" -s "$scratch/post.lua" "$url_b" >"$scratch/out-b"
  wait "$wrk_a"
  after_a=$(cpu "$pid_a") after_b=$(cpu "$pid_b")
  n_a=$(awk '/requests in/ { print $1 }' "$scratch/out-a") n_b=$(awk '/requests in/ { print $1 }' "$scratch/out-b")
  e_a=$(awk '/Non-2xx/ { print $NF }' "$scratch/out-a") e_b=$(awk '/Non-2xx/ { print $NF }' "$scratch/out-b")
  awk -v r="$round" -v la="$label_a" -v lb="$label_b" -v s="$seconds" \
    -v na="$n_a" -v nb="$n_b" -v ba="$before_a" -v aa="$after_a" -v bb="$before_b" -v ab="$after_b" \
    -v ea="${e_a:-0}" -v eb="${e_b:-0}" 'BEGIN {
      ca = (aa - ba) / na * 1e6; cb = (ab - bb) / nb * 1e6
      printf "round %d  %s %6.1f µs CPU/request %7.0f req/s  |  %s %6.1f µs %7.0f req/s  |  %s/%s %.3f  (errors %s/%s)\n",
        r, la, ca, na / s, lb, cb, nb / s, lb, la, cb / ca, ea, eb }'
  kill -9 "$pid_a" "$pid_b"; wait "$pid_a" "$pid_b" 2>/dev/null || true
  pid_a="" pid_b=""
done
