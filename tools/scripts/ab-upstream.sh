# Sourced by the A/B scripts (ab-node.sh, ab-cluster.sh, ab-together.sh): the fixed-body nginx
# upstream every build is measured against, the providers and virtual key of the nodes'
# configuration, and wrk's request. Expects $scratch (a scratch folder) to be set.

# Starts nginx answering every request with the same chat completion, on a port below the
# ephemeral range (32768-60999, so no client socket of an earlier run holds it); sets
# $upstream and $nginx_pid.
start_upstream() {
  upstream=$((11000 + RANDOM % 4000))
  local reply='{"id":"chatcmpl-ab","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"A/B reply."},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}'
  mkdir -p "$scratch/nginx"
  cat > "$scratch/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $scratch/nginx/nginx.pid;
error_log $scratch/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $scratch/nginx/body;
  proxy_temp_path $scratch/nginx/proxy;
  fastcgi_temp_path $scratch/nginx/fastcgi;
  uwsgi_temp_path $scratch/nginx/uwsgi;
  scgi_temp_path $scratch/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$upstream;
    location / { default_type application/json; return 200 '$reply'; }
  }
}
CONF
  /usr/sbin/nginx -p "$scratch/nginx" -c "$scratch/nginx/nginx.conf" &
  nginx_pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$upstream/" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$upstream/" >/dev/null || { echo "nginx did not start on port $upstream" >&2; exit 2; }
}

# The configuration's providers (two weighted keys on the upstream) and virtual key (a limit
# that never bites), as JSON members; the caller adds its "cluster" member.
ab_providers() {
  cat <<CONF
"providers": {"openai": {"type": "openai", "base_url": "http://127.0.0.1:$upstream/v1",
   "keys": [{"name": "ab-key-1", "value": "sk-ab-1", "models": ["gpt-4o-mini"], "weight": 0.8},
            {"name": "ab-key-2", "value": "sk-ab-2", "models": ["gpt-4o-mini"], "weight": 0.2}]}},
 "virtual_keys": [{"name": "ab-team", "value": "sk-ab-team", "models": ["*"], "limits": {"rpm": 100000000}}]
CONF
}

# wrk's request: a chat completion under the virtual key, in $scratch/post.lua.
write_post_lua() {
  cat > "$scratch/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"benchmark me"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-ab-team"
LUA
}
