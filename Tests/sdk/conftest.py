"""Fixtures for the SDK tests: a real mock provider and a real bifrost node on loopback."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import Process, free_port, running_node, wait_http  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))


@pytest.fixture(scope="session")
def mock():
    port = free_port()
    p = Process([os.path.join(BIN, "bifrost-mock-provider"), "--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        p.stop()


VIRTUAL_KEYS = {"team-a": "sk-team-a-0123456789", "team-small": "sk-team-small-0123456789"}


def node_config(mock_url: str, port: int, gossip_port: int) -> dict:
    return {
        "providers": {
            "openai": {
                "type": "openai",
                "base_url": f"{mock_url}/v1",
                "keys": [
                    {"name": "gpt-key-1", "value": "env.SDK_OPENAI_KEY",
                     "models": ["gpt-4o-mini", "text-embedding-3-small"], "weight": 0.8},
                    {"name": "gpt-key-2", "value": "sk-literal-key-2",
                     "models": ["gpt-4o-mini"], "weight": 0.2},
                ],
            },
            "anthropic": {
                "type": "anthropic",
                "base_url": mock_url,
                "keys": [{"name": "claude-key-1", "value": "env.SDK_ANTHROPIC_KEY",
                          "models": ["claude-3-5-haiku-latest"], "weight": 1}],
            },
        },
        "virtual_keys": [
            {"name": "team-a", "value": VIRTUAL_KEYS["team-a"], "models": ["*"], "limits": {"rpm": 10000}},
            {"name": "team-small", "value": VIRTUAL_KEYS["team-small"], "models": ["gpt-4o-mini"],
             "limits": {"rpm": 3}},
        ],
        "gateway": {"max_request_bytes": 65536},
        "cluster": {"enabled": False, "node_id": "sdk-node", "bind_address": f"127.0.0.1:{port}",
                    "gossip": {"port": gossip_port}},
    }


@pytest.fixture(scope="session")
def node(mock, tmp_path_factory):
    port, gossip_port = free_port(), free_port()
    directory = tmp_path_factory.mktemp("node")
    env = dict(os.environ, SDK_OPENAI_KEY="sk-upstream-openai-1", SDK_ANTHROPIC_KEY="sk-upstream-anthropic-1")
    with running_node(BIN, node_config(mock, port, gossip_port), directory, port, env=env) as url:
        yield url
