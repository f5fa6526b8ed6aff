"""Secrets never sit in the log in plain text: a configuration update that gives a provider key or
a virtual-key token literally is sealed with the cluster keyring before it is logged, and still
works after a restart; a node with nothing to seal with refuses it, naming the field.
"""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import free_port, running_node  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
ADMIN_TOKEN = "admin-sealed-0123456789"
UPSTREAM_SECRET = "sk-literal-upstream-7f3a9c"
CLIENT_TOKEN = "tok-literal-client-51d2e8"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "sealed"}]}


def operator_keys() -> dict:
    out = subprocess.run([os.path.join(BIN, "bifrost-config"), "keygen", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def node_config(port: int, keys: dict, mock: str) -> dict:
    return {
        "providers": {"openai": {"type": "openai", "base_url": f"{mock}/v1",
                                 "keys": [{"name": "file-key", "value": "sk-file-key", "models": ["gpt-4o-mini"]}]}},
        "virtual_keys": [{"name": "file-team", "value": "tok-file-team-0123456789", "models": ["*"]}],
        "admin": {"token": ADMIN_TOKEN, "signing_key": keys["private_key"], "trusted_keys": [keys["public_key"]]},
        "cluster": {"bind_address": f"127.0.0.1:{port}", "gossip": {"port": free_port()}},
    }


def update(mock: str) -> dict:
    return {
        "providers": {"openai": {"type": "openai", "base_url": f"{mock}/v1",
                                 "keys": [{"name": "sealed-key", "value": UPSTREAM_SECRET, "models": ["gpt-4o-mini"]}]}},
        "virtual_keys": [{"name": "sealed-team", "value": CLIENT_TOKEN, "models": ["*"]}],
    }


def request(url: str, method: str, body: dict, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def chat_until_ok(url: str, token: str, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status, _ = request(f"{url}/v1/chat/completions", "POST", CHAT, token)
        if status == 200:
            return status
        time.sleep(0.1)
    return status


def test_literal_secrets_in_an_update_are_sealed_in_the_log_and_work_after_a_restart(mock, tmp_path):
    keys = operator_keys()
    env = dict(os.environ, BIFROST_CLUSTER_KEY=base64.b64encode(os.urandom(32)).decode())
    port = free_port()
    config = node_config(port, keys, mock)
    with running_node(BIN, config, tmp_path, port, env=env) as url:
        status, body = request(f"{url}/admin/config", "PUT", update(mock), ADMIN_TOKEN)
        assert status == 200, body
        assert chat_until_ok(url, CLIENT_TOKEN) == 200
        # The open events endpoint names the update but withholds its document.
        events = json.loads(urllib.request.urlopen(f"{url}/cluster/events?limit=500", timeout=10).read())["events"]
        configs = [e for e in events if e["kind"] == "config.updated"]
        assert configs, events[:3]
        document = configs[0]["data"]["document"]
        assert document["sections"] == ["providers", "virtual_keys"], document
        assert "withheld" in document and len(document["sha256"]) == 64, document
        text = json.dumps(configs)
        assert "sealed-key" not in text and "sealed-team" not in text and mock not in text, text
    log = (tmp_path / "data" / "data.mdb").read_bytes()
    assert UPSTREAM_SECRET.encode() not in log
    assert CLIENT_TOKEN.encode() not in log
    assert b"sealed:v1:" in log
    # The same cluster key opens them again after a restart.
    config["cluster"]["gossip"]["port"] = free_port()
    with running_node(BIN, config, tmp_path, port, env=env) as url:
        assert chat_until_ok(url, CLIENT_TOKEN) == 200


def test_a_node_without_a_cluster_key_refuses_literal_secrets_naming_the_field(mock, tmp_path):
    keys = operator_keys()
    env = {k: v for k, v in os.environ.items() if k != "BIFROST_CLUSTER_KEY"}
    env.update(SEALED_TEST_UPSTREAM="sk-from-env", SEALED_TEST_TOKEN=CLIENT_TOKEN)
    port = free_port()
    with running_node(BIN, node_config(port, keys, mock), tmp_path, port, env=env) as url:
        status, body = request(f"{url}/admin/config", "PUT", update(mock), ADMIN_TOKEN)
        assert status == 400, body
        assert body["error"]["param"] == "providers.openai.keys[0].value", body
        assert "env.NAME" in body["error"]["message"], body
        # With references instead of literals the same update is taken.
        document = update(mock)
        document["providers"]["openai"]["keys"][0]["value"] = "env.SEALED_TEST_UPSTREAM"
        document["virtual_keys"][0]["value"] = "env.SEALED_TEST_TOKEN"
        status, body = request(f"{url}/admin/config", "PUT", document, ADMIN_TOKEN)
        assert status == 200, body
        assert chat_until_ok(url, CLIENT_TOKEN) == 200
