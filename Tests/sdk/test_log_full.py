"""A full log is an outage of writes, not of the node: once `retention.max_log_bytes` is reached
or the disk is full, new requests get 503 `log_full`, reads, metrics and the dashboard go on, the
node resumes by itself when there is room, and nothing it already accepted is lost.

The disk case runs on a small tmpfs of its own (skipped where this user may not mount one).
"""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import Process, free_port, wait_http  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
TOKEN = "sk-logfull-0123456789"
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "room?"}]}).encode()


def config(mock: str, port: int, retention: dict | None = None) -> dict:
    c = {
        "providers": {"openai": {"type": "openai", "base_url": f"{mock}/v1",
                                 "keys": [{"name": "k1", "value": "sk-up-1", "models": ["gpt-4o-mini"]}]}},
        "virtual_keys": [{"name": "team-a", "value": TOKEN, "models": ["*"], "limits": {"rpm": 1000000}}],
        "cluster": {"enabled": False, "node_id": "full-node", "bind_address": f"127.0.0.1:{port}",
                    "gossip": {"port": free_port()}},
    }
    if retention:
        c["retention"] = retention
    return c


def start(directory, data, cfg: dict, port: int) -> Process:
    path = directory / "bifrost.json"
    path.write_text(json.dumps(cfg))
    p = Process([os.path.join(BIN, "bifrost"), "serve", "--config", str(path), "--data", str(data)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
    except BaseException:
        print(p.output())
        p.stop()
        raise
    return p


def chat(port: int) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=CHAT,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(port: int, name: str) -> float | None:
    text = get(port, "/metrics")[1].decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def until_full(port: int, limit: int = 20000) -> tuple[int, tuple[int, dict, dict]]:
    """Requests 8 at a time until one is refused with `log_full`: how many were served, and the refusal."""
    served = 0
    refusal = None
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while served < limit and refusal is None:
            for status, headers, body in pool.map(lambda _: chat(port), range(64)):
                if status == 200:
                    served += 1
                elif status == 503 and body["error"].get("code") == "log_full":
                    refusal = refusal or (status, headers, body)
                else:
                    raise AssertionError(f"unexpected answer {status}: {body}")
    assert refusal, f"the log never filled after {served} requests"
    return served, refusal


def served_in_log(data) -> int:
    """Client requests the log records as served: usage.recorded charged to the virtual key, status 200."""
    out = subprocess.run([os.path.join(BIN, "bifrost-dump"), str(data), "--kind", "usage.recorded"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return sum(1 for e in events if "vk:team-a" in e["data"]["limit_keys"] and e["data"]["status"] == 200)


def assert_reads_work(port: int) -> None:
    status, body = get(port, "/health")
    assert status == 200 and json.loads(body)["log"] == "full", body
    assert metric(port, "bifrost_log_full") == 1.0
    for path in ("/cluster/log", "/cluster/metrics", "/cluster/events?limit=5", "/ui"):
        assert get(port, path)[0] == 200, path


def test_max_log_bytes_refuses_new_requests_and_keeps_the_node_readable(mock, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    p = start(tmp_path, data, config(mock, port, {"max_log_bytes": "1MiB"}), port)
    try:
        served, (status, headers, body) = until_full(port)
        assert served > 100
        assert headers.get("retry-after") == "5"
        assert body["error"]["type"] == "api_error"
        assert "event log" in body["error"]["message"]
        assert_reads_work(port)
        assert "the event log is full" in p.output()
        # Still refused: the limit holds until there is room.
        assert chat(port)[0] == 503
    finally:
        p.stop()
    assert "events of finished requests were not written" not in p.output()
    # Restarted with room to spare, the same log serves again and holds every request it served.
    p = start(tmp_path, data, config(mock, port, {"max_log_bytes": "64MiB"}), port)
    try:
        assert chat(port)[0] == 200
        assert json.loads(get(port, "/health")[1])["log"] == "writable"
        assert metric(port, "bifrost_log_full") == 0.0
    finally:
        p.stop()
    assert served_in_log(data) == served + 1


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_stops_writes_until_space_returns_and_loses_nothing(mock, tmp_path, small_disk):
    port = free_port()
    data = small_disk / "data"
    p = start(tmp_path, data, config(mock, port), port)
    try:
        # Leave ~512 KiB for the log.
        free = shutil.disk_usage(small_disk).free
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * max(0, free - (512 << 10)))
        served, (status, _, body) = until_full(port)
        assert served > 50
        assert_reads_work(port)
        # Space returns: the node takes requests again by itself, and writes what it held back.
        filler.unlink()
        deadline = time.monotonic() + 15
        while chat(port)[0] != 200:
            assert time.monotonic() < deadline, p.output(tail=3000)
            time.sleep(0.2)
        served += 1
        deadline = time.monotonic() + 10
        while metric(port, "bifrost_log_full") != 0.0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert json.loads(get(port, "/health")[1])["log"] == "writable"
        assert "the event log has room again" in p.output()
    finally:
        p.stop()
    # Every request served before, during and after the outage is in the log, which reads whole.
    assert served_in_log(data) == served
    stats = subprocess.run([os.path.join(BIN, "bifrost-dump"), str(data), "--stats"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(stats.stdout)["events"] > 0
