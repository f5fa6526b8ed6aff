"""Budgets that hold across the cluster: a virtual key's USD budget refuses requests once spent, as
`openai.RateLimitError` (`budget_exceeded`) and the Anthropic SDK's `RateLimitError`, and three real
nodes sharing one budget spend at most the budget plus the bound in docs/OPERATIONS.md, which
`bifrost-replay --view spend` on every node and `/cluster/metrics` agree on."""

import concurrent.futures
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import Process, free_port, free_port_block, running_node, wait_http  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
TOKEN = "sk-budget-team-a-0123456789"
MAX_TOKENS = 16


def providers(mock: str) -> dict:
    return {
        "openai": {"type": "openai", "base_url": f"{mock}/v1", "keys": [
            {"name": "k1", "value": "sk-up-1", "models": ["gpt-4o-mini"]},
            {"name": "k2", "value": "sk-up-2", "models": ["gpt-4o-mini"]}]},
        "anthropic": {"type": "anthropic", "base_url": mock, "keys": [
            {"name": "claude-key", "value": "sk-up-3", "models": ["claude-sonnet-4-5"]}]},
    }


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def chat(url: str, i: int) -> tuple[int, dict, dict]:
    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": MAX_TOKENS,
                       "messages": [{"role": "user", "content": f"spend {i} " + "y" * (i % 40)}]}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                     headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def spend(data) -> dict:
    out = subprocess.run([os.path.join(BIN, "bifrost-replay"), str(data), "--view", "spend"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)["views"]["spend"]


ADMIN_TOKEN = "admin-budget-0123456789"


def admin_put(url: str, document: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/admin/config", data=json.dumps(document).encode(), method="PUT",
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                                              "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_a_spent_budget_is_refused_in_each_sdks_own_error(mock, tmp_path):
    port = free_port()
    cluster_section = {"enabled": False, "node_id": "budget-node", "bind_address": f"127.0.0.1:{port}",
                       "gossip": {"port": free_port()}}

    def document(max_usd: float) -> dict:
        return {"providers": providers(mock),
                "virtual_keys": [{"name": "team-a", "value": TOKEN, "models": ["*"],
                                  "budget": {"max_usd": max_usd, "period": "1d"}}]}

    keys = json.loads(subprocess.run([os.path.join(BIN, "bifrost-config"), "keygen", "--json"], check=True,
                                     capture_output=True, text=True, timeout=30).stdout)
    config = dict(document(0.0002), cluster=cluster_section,
                  admin={"token": ADMIN_TOKEN, "signing_key": keys["private_key"], "trusted_keys": [keys["public_key"]]})
    env = dict(os.environ, BIFROST_CLUSTER_KEY=subprocess.run(
        [os.path.join(BIN, "bifrost"), "keygen"], capture_output=True, text=True, timeout=30, check=True).stdout.strip())
    with running_node(BIN, config, tmp_path, port, env=env) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
        served = 0
        with pytest.raises(openai.RateLimitError) as refused:
            for i in range(500):
                client.chat.completions.create(model="gpt-4o-mini", max_tokens=MAX_TOKENS,
                                               messages=[{"role": "user", "content": f"spend {i}"}])
                served += 1
        assert served > 5, "the budget refused before it was spent"
        error = refused.value
        assert error.code == "budget_exceeded" and error.type == "insufficient_quota", error.body
        headers = error.response.headers
        assert float(headers["x-budget-limit-usd"]) == pytest.approx(0.0002)
        assert 0 <= float(headers["x-budget-remaining-usd"]) < 0.0002
        assert headers["x-budget-reset"].endswith("T00:00:00.000Z"), headers
        assert int(headers["retry-after"]) >= 1

        claude = anthropic.Anthropic(base_url=url, api_key=TOKEN, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as refused_messages:
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=MAX_TOKENS,
                                   messages=[{"role": "user", "content": "over budget"}])
        assert refused_messages.value.body["error"]["type"] == "rate_limit_error"
        assert "budget" in refused_messages.value.message

        before = get_json(f"{url}/cluster/metrics")["spend"]["virtual_keys"]["team-a"]
        assert before["budget"]["max_usd"] == pytest.approx(0.0002) and before["budget"]["period"] == "1d"
        assert before["budget"]["spent_micro_usd"] <= 200
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'bifrost_budget_remaining_usd{virtual_key="team-a"}' in metrics

        # An operator raises the budget through the admin API (a config.updated event): served again.
        status, body = admin_put(url, document(1.0))
        assert status == 200, body
        deadline = time.monotonic() + 10
        while True:
            try:
                client.chat.completions.create(model="gpt-4o-mini", max_tokens=MAX_TOKENS,
                                               messages=[{"role": "user", "content": "raised"}])
                break
            except openai.RateLimitError:
                assert time.monotonic() < deadline, "the raised budget never applied"
                time.sleep(0.1)
        deadline = time.monotonic() + 10
        while True:
            raised = get_json(f"{url}/cluster/metrics")["spend"]["virtual_keys"]["team-a"]["budget"]
            if raised["spent_micro_usd"] > before["budget"]["spent_micro_usd"]:
                break
            assert time.monotonic() < deadline, f"the request under the raised budget was not counted: {raised}"
            time.sleep(0.1)
        assert raised["max_usd"] == pytest.approx(1.0)


class Cluster:
    def __init__(self, root, mock: str, budget_usd: float):
        self.root = root
        self.processes: list[Process] = []
        self.urls: list[str] = []
        self.dirs = []
        key = subprocess.run([os.path.join(BIN, "bifrost"), "keygen"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
        config = root / "bifrost.json"
        config.write_text(json.dumps({
            "providers": providers(mock),
            "virtual_keys": [{"name": "team-a", "value": TOKEN, "models": ["*"], "limits": {"rpm": 1000000},
                              "budget": {"max_usd": budget_usd, "period": "total"}}],
            "cluster": {"enabled": True, "gossip": {"interval": "200ms", "timeout": "1s"}},
        }))
        env = dict(os.environ, BIFROST_CLUSTER_KEY=key)
        api, gossip = free_port_block(3)
        for i in range(3):
            peers = ",".join(f"127.0.0.1:{api + j}" for j in range(3) if j != i)
            data = root / f"node-{i + 1}"
            self.dirs.append(data)
            self.processes.append(Process(
                [os.path.join(BIN, "bifrost"), "serve", "--config", str(config), "--cluster", "--node-id",
                 f"budget-node-{i + 1}", "--bind", f"127.0.0.1:{api + i}", "--gossip-port", str(gossip + i),
                 "--peers", peers, "--data", str(data)], str(root / f"node-{i + 1}.log"), env=env))
            self.urls.append(f"http://127.0.0.1:{api + i}")

    def wait_formed(self, timeout: float = 60):
        deadline = time.monotonic() + timeout
        for url in self.urls:
            wait_http(url + "/health", timeout=timeout)
        while time.monotonic() < deadline:
            try:
                if all(sum(n.get("status") == "alive" for n in get_json(u + "/cluster/nodes")["nodes"]) == 3
                       for u in self.urls):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        raise AssertionError("the cluster did not form")

    def wait_converged(self, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [get_json(u + "/cluster/log") for u in self.urls]
            if len({log["root_digest"] for log in logs}) == 1 and len({log["events"] for log in logs}) == 1:
                return
            time.sleep(0.3)
        raise AssertionError("the logs did not converge")

    def stop(self):
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            p.stop(timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path}\n{p.output(3000)}" for p in self.processes)


def test_three_nodes_share_one_budget_within_the_stated_bound(mock, tmp_path):
    budget_micros = 1_000
    cluster = Cluster(tmp_path, mock, budget_micros / 1e6)
    try:
        cluster.wait_formed()
        served = 0
        refused = 0
        counter = itertools.count()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            while refused < 60:
                batch = [next(counter) for _ in range(12)]
                for status, _, body in pool.map(lambda i: chat(cluster.urls[i % 3], i), batch):
                    if status == 200:
                        served += 1
                        refused = 0
                    else:
                        assert status == 429 and body["error"]["code"] == "budget_exceeded", body
                        refused += 1
                assert served < 5000, "the budget never refused"
        cluster.wait_converged()
        reports = [spend(d) for d in cluster.dirs]
        totals = [r["virtual_keys"]["team-a"]["cost_micro_usd"] for r in reports]
        assert len(set(totals)) == 1, totals
        total = totals[0]
        # The largest estimate of these requests: the body as input (4 bytes a token) and
        # max_tokens as output at gpt-4o-mini's prices, in micro-USD.
        largest_body = len(json.dumps({"model": "gpt-4o-mini", "max_tokens": MAX_TOKENS, "messages": [
            {"role": "user", "content": "spend 99999 " + "y" * 39}]}))
        largest_estimate = (largest_body // 4 * 150_000 + MAX_TOKENS * 600_000 + 500_000) // 1_000_000
        # The bound: (nodes - 1) requests of the largest estimate beyond the budget (each node may
        # hold one request when its share is smaller than a request), nothing more, since no
        # request costs more than its estimate here.
        assert total <= budget_micros + 2 * largest_estimate, (total, largest_estimate)
        assert total >= budget_micros - 3 * largest_estimate, f"only {total} of {budget_micros} spent"
        for url in cluster.urls:
            metrics = get_json(url + "/cluster/metrics")["spend"]["virtual_keys"]["team-a"]
            assert metrics["total_micro_usd"] == total, metrics
            assert metrics["budget"]["spent_micro_usd"] == total
        assert reports[0]["virtual_keys"]["team-a"]["requests"] == served
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
