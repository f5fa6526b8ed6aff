"""Every request is priced: the official SDKs against a real node over the mock provider, the cost
in the node's metrics and its log, and `bifrost-replay --view spend` answering who spent what from
the log alone. A model without a price is unpriced, never $0."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import anthropic
import openai

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import free_port, running_node  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
TEAM_A = "sk-pricing-team-a-0123456789"
TEAM_B = "sk-pricing-team-b-0123456789"
# gpt-4o-mini in the shipped table: $0.15 in, $0.60 out per 1M tokens (pico-USD per token).
INPUT_PICO, OUTPUT_PICO = 150_000, 600_000
# The negotiated input price of key k2, set in its own `pricing`.
K2_INPUT_PICO = 100_000


def config(mock: str, port: int) -> dict:
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": f"{mock}/v1", "keys": [
                {"name": "k1", "value": "sk-up-1", "models": ["gpt-4o-mini"], "weight": 1},
                {"name": "k2", "value": "sk-up-2", "models": ["gpt-4o-mini"], "weight": 1,
                 "pricing": {"models": {"gpt-4o-mini": {"input_cost_per_token": 1e-7}}}},
            ]},
            "anthropic": {"type": "anthropic", "base_url": mock, "keys": [
                {"name": "claude-key", "value": "sk-up-3", "models": ["in-house-claude"]}]},
        },
        "virtual_keys": [
            {"name": "team-a", "value": TEAM_A, "models": ["*"], "limits": {"rpm": 100000}},
            {"name": "team-b", "value": TEAM_B, "models": ["*"]},
        ],
        "cluster": {"enabled": False, "node_id": "pricing-node", "bind_address": f"127.0.0.1:{port}",
                    "gossip": {"port": free_port()}},
    }


def micro_usd(pico: int) -> int:
    return (pico + 500_000) // 1_000_000


def metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        m = re.match(rf"^{name}{{([^}}]*)}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return None


def usage_events(data) -> list[dict]:
    out = subprocess.run([os.path.join(BIN, "bifrost-dump"), str(data), "--kind", "usage.recorded"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [json.loads(line)["data"] for line in out.splitlines() if line.strip()]


def spend(data, *args) -> dict:
    out = subprocess.run([os.path.join(BIN, "bifrost-replay"), str(data), "--view", "spend", *args],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)["views"]["spend"]


def test_requests_are_priced_per_key_and_unpriced_models_are_never_zero(mock, tmp_path):
    port = free_port()
    with running_node(BIN, config(mock, port), tmp_path, port) as url:
        a = openai.OpenAI(base_url=f"{url}/v1", api_key=TEAM_A, max_retries=0)
        b = openai.OpenAI(base_url=f"{url}/v1", api_key=TEAM_B, max_retries=0)
        expected = {"team-a": 0, "team-b": 0}
        by_key: dict[str, int] = {}
        usages = []
        for i in range(12):
            client, team = (a, "team-a") if i % 3 else (b, "team-b")
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "price me " + "x" * (40 * i)}])
            usages.append((team, r.usage.prompt_tokens, r.usage.completion_tokens))
        # A stream whose client did not ask for usage is priced from the usage the gateway asked for.
        chunks = list(a.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me"}], stream=True))
        assert all(c.usage is None for c in chunks)
        claude = anthropic.Anthropic(base_url=url, api_key=TEAM_A, max_retries=0)
        message = claude.messages.create(model="in-house-claude", max_tokens=64,
                                         messages=[{"role": "user", "content": "no price"}])
        assert message.usage.input_tokens > 0

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            events = usage_events(tmp_path / "data")
            if len(events) >= 14:
                break
            time.sleep(0.2)
        priced = [e for e in events if e["model"] == "gpt-4o-mini"]
        assert len(priced) == 13, events
        for e in priced:
            input_pico = K2_INPUT_PICO if e["key_id"] == "k2" else INPUT_PICO
            cost = micro_usd(e["tokens_in"] * input_pico + e["tokens_out"] * OUTPUT_PICO)
            assert e["priced"] is True and e["cost_micro_usd"] == cost, e
            assert e["price_version"], e
            team = "team-a" if "vk:team-a" in e["limit_keys"] else "team-b"
            assert f"vk:{team}" in e["limit_keys"], e
            expected[team] += cost
            by_key[e["key_id"]] = by_key.get(e["key_id"], 0) + cost
        assert {e["key_id"] for e in priced} == {"k1", "k2"}
        # The SDK saw the token counts the gateway priced (the one left over is the stream's).
        remaining = [("team-a" if "vk:team-a" in e["limit_keys"] else "team-b", e["tokens_in"], e["tokens_out"])
                     for e in priced]
        for u in usages:
            remaining.remove(u)
        assert len(remaining) == 1 and remaining[0][0] == "team-a", remaining
        unpriced = [e for e in events if e["model"] == "in-house-claude"]
        assert len(unpriced) == 1 and unpriced[0]["priced"] is False and unpriced[0]["cost_micro_usd"] is None

        text = metrics(url)
        for team, micros in expected.items():
            value = sample(text, "bifrost_cost_usd_total", provider="openai", model="gpt-4o-mini", virtual_key=team)
            assert value is not None and abs(value - micros / 1e6) < 1e-9, (team, value, micros)
        assert sample(text, "bifrost_unpriced_requests_total", model="in-house-claude") == 1
        assert re.search(r"^bifrost_unpriced_targets 1(\.0)?$", text, re.M), text

    report = spend(tmp_path / "data")
    for team, micros in expected.items():
        assert report["virtual_keys"][team]["models"]["gpt-4o-mini"]["cost_micro_usd"] == micros
    for key, micros in by_key.items():
        assert report["provider_keys"][key]["cost_micro_usd"] == micros
    assert report["virtual_keys"]["team-a"]["models"]["in-house-claude"]["unpriced_requests"] == 1
    assert report["virtual_keys"]["team-a"]["models"]["in-house-claude"]["cost_micro_usd"] == 0
    assert report["total"]["cost_micro_usd"] == sum(expected.values())
    # A range before every request holds nothing.
    assert spend(tmp_path / "data", "--until", "2020-01-01T00:00:00Z")["total"]["requests"] == 0
