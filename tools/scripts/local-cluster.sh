#!/usr/bin/env bash
# A 3-node Bifrost cluster on this host with the mock provider: API 8080-8082, gossip/sync
# 7946-7948, mock provider on 18080. Credentials, config and data live in $STATE_DIR (kept
# between runs: the nodes are durable). Ctrl-C stops every process gracefully.
set -euo pipefail
BIN=${BIN:-.build/debug}
STATE_DIR=${STATE_DIR:-.bifrost}
NODES=${NODES:-3}
MOCK_PORT=${MOCK_PORT:-18080}
mkdir -p "$STATE_DIR/cluster"
ENV_FILE="$STATE_DIR/demo.env"
# Older state dirs kept the cluster key in cluster.env.
[ -f "$ENV_FILE" ] || [ ! -f "$STATE_DIR/cluster.env" ] || cp "$STATE_DIR/cluster.env" "$ENV_FILE"
touch "$ENV_FILE"; chmod 600 "$ENV_FILE"
set -a; . "$ENV_FILE"; set +a
# Anything missing is created once and kept.
add() { grep -q "^$1=" "$ENV_FILE" || echo "$1=$2" >> "$ENV_FILE"; }
random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
add BIFROST_CLUSTER_KEY "$("$BIN/bifrost" keygen)"
add BIFROST_ADMIN_TOKEN "admin-$(random_hex 12)"
if ! grep -q "^BIFROST_OPERATOR_KEY=" "$ENV_FILE"; then
  keys=$("$BIN/bifrost-config" keygen --json)
  add BIFROST_OPERATOR_KEY "$(echo "$keys" | sed 's/.*"private_key":"\([^"]*\)".*/\1/')"
  add BIFROST_OPERATOR_PUBLIC_KEY "$(echo "$keys" | sed 's/.*"public_key":"\([^"]*\)".*/\1/')"
fi
add OPENAI_API_KEY sk-mock-openai
add ANTHROPIC_API_KEY sk-mock-anthropic
add BIFROST_DEMO_KEY "sk-demo-$(random_hex 12)"
set -a; . "$ENV_FILE"; set +a

CONFIG="$STATE_DIR/cluster/bifrost.json"
cat > "$CONFIG" <<JSON
{
  "providers": {
    "openai": {"type": "openai", "base_url": "http://127.0.0.1:$MOCK_PORT/v1",
      "keys": [
        {"name": "gpt-4-key-1", "value": "env.OPENAI_API_KEY", "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"], "weight": 0.8},
        {"name": "gpt-4-key-2", "value": "env.OPENAI_API_KEY", "models": ["gpt-4o-mini", "gpt-4o"], "weight": 0.2}
      ]},
    "anthropic": {"type": "anthropic", "base_url": "http://127.0.0.1:$MOCK_PORT",
      "keys": [{"name": "claude-3-key-1", "value": "env.ANTHROPIC_API_KEY", "models": ["claude-3-5-haiku-latest", "claude-3-5-sonnet-latest"], "weight": 1}]}
  },
  "virtual_keys": [{"name": "team-a", "value": "env.BIFROST_DEMO_KEY", "models": ["*"], "limits": {"rpm": 600, "tpm": 1000000}}],
  "gateway": {"fallbacks": {"gpt-4o": ["claude-3-5-sonnet-latest"]}},
  "admin": {"token": "env.BIFROST_ADMIN_TOKEN", "signing_key": "env.BIFROST_OPERATOR_KEY",
            "trusted_keys": ["$BIFROST_OPERATOR_PUBLIC_KEY"]},
  "cluster": {"enabled": true}
}
JSON

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

# Process substitution keeps $! the pid of the program itself (not of sed), so stop() reaches it
# even when only this script gets the signal.
"$BIN/bifrost-mock-provider" --port "$MOCK_PORT" --latency-ms 20 > >(sed -u "s/^/[mock] /") 2>&1 &
pids+=($!)
for i in $(seq 1 "$NODES"); do
  api=$((8079 + i)); gossip=$((7945 + i))
  peers=""
  for j in $(seq 1 "$NODES"); do [ "$j" = "$i" ] || peers="$peers,127.0.0.1:$((8079 + j))"; done
  "$BIN/bifrost" serve --config "$CONFIG" --node-id "bifrost-node-$i" --bind "127.0.0.1:$api" --gossip-port "$gossip" \
    --peers "${peers#,}" --data "$STATE_DIR/cluster/bifrost-node-$i" > >(sed -u "s/^/[node-$i] /") 2>&1 &
  pids+=($!)
done

# Up once every node answers /health (bounded: a node that cannot start has said why above).
for _ in $(seq 1 120); do
  up=0
  for i in $(seq 1 "$NODES"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((8079 + i))/health" 2>/dev/null || true)
    [ "$code" = 200 ] && up=$((up + 1))
  done
  [ "$up" = "$NODES" ] && break
  sleep 0.5
done
cat <<MSG

Bifrost cluster of $NODES nodes is up, in front of the mock provider (http://127.0.0.1:$MOCK_PORT):
$(for i in $(seq 1 "$NODES"); do echo "  bifrost-node-$i  http://127.0.0.1:$((8079 + i))   gossip 127.0.0.1:$((7945 + i))"; done)

Secrets are in $ENV_FILE (source it: set -a; . $ENV_FILE; set +a). Try:
  curl -s http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer \$BIFROST_DEMO_KEY" \\
       -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}'
  curl -s http://127.0.0.1:8081/v1/models -H "Authorization: Bearer \$BIFROST_DEMO_KEY"
  python3 -c 'import os, openai; c = openai.OpenAI(base_url="http://127.0.0.1:8082/v1", api_key=os.environ["BIFROST_DEMO_KEY"]); print(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content)'
  open http://127.0.0.1:8080/ui
  curl -s http://127.0.0.1:8081/cluster/metrics
  curl -s -X PUT http://127.0.0.1:8082/admin/keys/gpt-4-key-2/weight?wait=replicated \\
       -H "Authorization: Bearer \$BIFROST_ADMIN_TOKEN" -d '{"weight": 0.5, "reason": "demo"}'
  $BIN/bifrost-dump $STATE_DIR/cluster/bifrost-node-1 --stats

Ctrl-C stops every process.
MSG
wait
