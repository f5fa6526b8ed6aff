"""The HTTP front cannot be wedged: each attack a client can make on the port, against a real node.

A node of its own with short limits (gateway.http), so each bound shows in seconds.
"""

import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import Process, free_port, running_node, wait_http  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
TOKEN = "sk-front-0123456789"
ADMIN_TOKEN = "admin-front-0123456789"
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
MAX_CONNECTIONS = 64
MAX_REQUEST_BYTES = 65536
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "front"}]}).encode()


@pytest.fixture(scope="module")
def slow_mock():
    """A mock whose streams pause 100 ms between pieces, so a client can leave mid-stream."""
    port = free_port()
    p = Process([os.path.join(BIN, "bifrost-mock-provider"), "--port", str(port), "--stream-chunk-ms", "100"])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        p.stop()


@pytest.fixture(scope="module")
def front(mock, slow_mock, tmp_path_factory):
    port = free_port()
    directory = tmp_path_factory.mktemp("front")
    config = {
        "providers": {"openai": {"type": "openai", "base_url": f"{mock}/v1",
                                 "keys": [{"name": "k1", "value": "sk-up-1", "models": ["gpt-4o-mini"]}]},
                      "slow": {"type": "openai", "base_url": f"{slow_mock}/v1",
                               "keys": [{"name": "k-slow", "value": "sk-up-slow", "models": ["gpt-slow"]}]},
                      "refused": {"type": "openai", "base_url": f"{mock}/v1",
                                  "keys": [{"name": "internal-key-name", "value": "bad-0123456789", "models": ["gpt-bad"]}]}},
        "virtual_keys": [{"name": "team-a", "value": TOKEN, "models": ["*"]}],
        "admin": {"token": ADMIN_TOKEN},
        "gateway": {"max_request_bytes": MAX_REQUEST_BYTES,
                    "http": {"header_timeout": "2s", "body_timeout": "2s", "idle_timeout": "3s",
                             "max_connections": MAX_CONNECTIONS, "max_header_bytes": 8192}},
        "cluster": {"bind_address": f"127.0.0.1:{port}", "gossip": {"port": free_port()}},
    }
    with running_node(BIN, config, directory, port):
        yield port


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    s.settimeout(timeout)
    data = b""
    start = time.monotonic()
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data, time.monotonic() - start


def status_of(response: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    return int(m.group(1)) if m else None


def rejections(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for m in re.finditer(r'^bifrost_http_rejections_total\{reason="([a-z_]+)"\} (\S+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def test_a_head_sent_one_byte_at_a_time_is_cut_at_header_timeout(front):
    before = rejections(front).get("header_timeout", 0)
    s = connect(front)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    closed_after = None
    answer = b""
    s.settimeout(0.25)
    for byte in b"X-Slow: " + b"a" * 200:
        try:
            s.send(bytes([byte]))
            answer = s.recv(65536)
            closed_after = time.monotonic() - start
            break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - start
            break
        if time.monotonic() - start > 20:
            break
    rest, _ = read_until_closed(s, timeout=5)
    s.close()
    assert closed_after is not None, "the slow head kept its connection for 20 s"
    assert closed_after < HEADER_TIMEOUT + 1.5
    assert status_of(answer + rest) == 408, answer + rest
    assert rejections(front).get("header_timeout", 0) == before + 1


def test_fifty_stalled_bodies_are_answered_408_at_body_timeout(front):
    before = rejections(front).get("body_timeout", 0)
    sockets = []
    for _ in range(50):
        s = connect(front)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo")
        sockets.append(s)
    start = time.monotonic()
    for s in sockets:
        data, _ = read_until_closed(s, timeout=BODY_TIMEOUT + 5)
        assert status_of(data) == 408, data[:200]
        assert b'"code":"request_timeout"' in data
        s.close()
    assert time.monotonic() - start < BODY_TIMEOUT + 3
    assert rejections(front).get("body_timeout", 0) == before + 50


def test_idle_connections_are_capped_and_closed_after_idle_timeout(front):
    before = rejections(front)
    idle = [connect(front) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.3)
    extra = connect(front)
    data, _ = read_until_closed(extra, timeout=5)
    extra.close()
    assert status_of(data) == 503, data[:200]
    assert b"retry-after: 1" in data.lower()
    start = time.monotonic()
    for s in idle:
        _, _ = read_until_closed(s, timeout=IDLE_TIMEOUT + 5)
        s.close()
    assert time.monotonic() - start < IDLE_TIMEOUT + 3
    after = rejections(front)
    assert after.get("max_connections", 0) >= before.get("max_connections", 0) + 1
    assert after.get("idle_timeout", 0) >= before.get("idle_timeout", 0) + MAX_CONNECTIONS
    # The port serves again.
    assert urllib.request.urlopen(f"http://127.0.0.1:{front}/health", timeout=10).status == 200


def test_expect_100_continue_gets_100_before_the_body(front):
    s = connect(front)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: "
              + str(len(CHAT)).encode() + b"\r\n\r\n")
    s.settimeout(1.0)
    interim = s.recv(65536)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    s.sendall(CHAT)
    s.settimeout(10)
    response = b""
    while b"Mock reply" not in response:
        chunk = s.recv(65536)
        if not chunk:
            break
        response += chunk
    s.close()
    assert status_of(response) == 200, response[:300]


def test_a_chunked_body_over_the_limit_gets_413_in_the_error_shape(front):
    before = rejections(front).get("body_too_large", 0)
    s = connect(front)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 8192
    try:
        for _ in range(MAX_REQUEST_BYTES // len(chunk) + 2):
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, _ = read_until_closed(s, timeout=5)
    s.close()
    assert status_of(data) == 413, data[:300]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_too_large"
    assert str(MAX_REQUEST_BYTES) in body["error"]["message"]
    assert rejections(front).get("body_too_large", 0) == before + 1


def test_an_announced_body_over_the_limit_gets_413_without_100_continue(front):
    s = connect(front)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "
              + str(MAX_REQUEST_BYTES + 1).encode() + b"\r\n\r\n")
    data, elapsed = read_until_closed(s, timeout=5)
    s.close()
    assert status_of(data) == 413, data[:300]
    assert b"100 Continue" not in data
    assert elapsed < 2


def test_http_1_0_without_keep_alive_is_closed_after_the_response(front):
    s = connect(front)
    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    data, elapsed = read_until_closed(s, timeout=5)
    s.close()
    assert status_of(data) == 200, data[:200]
    assert elapsed < 2, "the HTTP/1.0 connection stayed open"


def test_http_1_1_keeps_the_connection_for_the_next_request(front):
    s = connect(front)
    for _ in range(3):
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        data = s.recv(65536)
        assert status_of(data) == 200, data[:200]
    s.close()


def chat_request(connection: str = "keep-alive") -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(CHAT)}\r\nConnection: {connection}\r\n\r\n"
            ).encode() + CHAT


def test_pipelined_requests_are_answered_in_order(front):
    # Three requests in one write: each waits for the response before it, none is lost.
    s = connect(front)
    s.sendall(chat_request() + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + chat_request("close"))
    data, _ = read_until_closed(s, timeout=10)
    s.close()
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 200, 200], data[:600]
    parts = data.split(b"HTTP/1.1 ")
    assert b"chat.completion" in parts[1] and b'"status":"serving"' in parts[2], data[:600]
    assert b"chat.completion" in parts[3] and b"connection: close" in parts[3].lower(), data[:600]


def test_garbage_pipelined_behind_a_request_closes_only_after_its_response(front):
    s = connect(front)
    s.sendall(chat_request() + b"\x16\x03\x01 not http\r\n\r\n")
    data, _ = read_until_closed(s, timeout=10)
    s.close()
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 400], data[:600]


def test_every_key_failing_names_the_provider_but_no_key_name_or_provider_text(front):
    body = json.dumps({"model": "gpt-bad", "messages": [{"role": "user", "content": "x"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{front}/v1/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)
    assert caught.value.code == 502
    error = json.loads(caught.value.read())["error"]
    assert error["code"] == "all_keys_failed", error
    assert "refused: HTTP 401" in error["message"], error
    # Neither the operator's key id nor the provider's message (which quotes part of the key).
    assert "internal-key-name" not in error["message"] and "6789" not in error["message"], error
    assert "Incorrect API key" not in error["message"], error


def test_made_up_models_do_not_grow_metrics_or_reach_them_raw(front):
    def series() -> set[str]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{front}/metrics", timeout=10).read()
        assert b"\x00" not in text
        return {line.split(" ")[0] for line in text.decode().splitlines() if line.startswith("bifrost_requests_total{")}

    def chat(model: str) -> int:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{front}/v1/chat/completions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(req, timeout=10).status
        except urllib.error.HTTPError as e:
            return e.code

    assert chat("made-up-warmup") == 404
    before = series()
    for i in range(100):
        assert chat(f"made-up-{i}") == 404
    assert chat("gpt-4o-mini\u0000x") == 404
    after = series()
    assert after == before, after - before
    assert any('model="other"' in s for s in after), after


def test_headers_over_max_header_bytes_get_431(front):
    before = rejections(front).get("headers_too_large", 0)
    s = connect(front)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n")
    data, _ = read_until_closed(s, timeout=5)
    s.close()
    assert status_of(data) == 431, data[:200]
    assert rejections(front).get("headers_too_large", 0) == before + 1


def test_garbage_gets_400_and_is_closed(front):
    s = connect(front)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    data, _ = read_until_closed(s, timeout=5)
    s.close()
    assert status_of(data) == 400, data[:200]


def mock_stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{url}/mock/stats", timeout=10).read())


def test_a_client_that_leaves_mid_stream_closes_the_upstream_stream(front, slow_mock):
    body = json.dumps({"model": "gpt-slow", "stream": True, "messages": [
        {"role": "user", "content": "a long question so the reply streams in many pieces, one by one"}]}).encode()
    s = connect(front)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
              + b"\r\n\r\n" + body)
    s.settimeout(10)
    received = b""
    while b"data: " not in received:
        chunk = s.recv(65536)
        assert chunk, received
        received += chunk
    assert status_of(received) == 200, received[:300]
    s.close()
    deadline = time.monotonic() + 5
    stats = mock_stats(slow_mock)
    while stats.get("streams_closed_early", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = mock_stats(slow_mock)
    assert stats.get("streams_closed_early") == 1, stats
    assert stats.get("streams_completed") == 0, stats


def admin_put(port: int, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="PUT",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("block", ["admin", "cluster"])
def test_a_config_update_carrying_a_node_local_block_is_refused_naming_it(front, block):
    document = {"providers": {}, block: {"token": "hijacked", "trusted_keys": []} if block == "admin"
                else {"peers": ["10.0.0.1:8080"]}}
    status, body = admin_put(front, "/admin/config", document)
    assert status == 400, body
    assert body["error"]["param"] == block
    assert block in body["error"]["message"]


def test_the_weight_endpoint_refuses_unknown_fields_like_config(front):
    status, body = admin_put(front, "/admin/keys/k1/weight", {"weight": 0.5, "reason": "test", "wieght": 2})
    assert status == 400, body
    assert body["error"]["param"] == "wieght"
    status, body = admin_put(front, "/admin/keys/k1/weight", {"weight": -1})
    assert status == 400, body
    assert body["error"]["param"] == "weight"


def finished_requests(port: int, model: str, status: int) -> float:
    """bifrost_requests_total for `model` answered (or ended) with `status`, over its keys."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = 0.0
    for m in re.finditer(r"^bifrost_requests_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("model") == model and labels.get("status") == str(status):
            total += float(m.group(2))
    return total


def test_a_client_that_leaves_while_the_provider_thinks_ends_its_request_at_once(front, slow_mock):
    # The slow key answers only after 3 s; the client leaves after 0.3 s.
    fault = urllib.request.Request(f"{slow_mock}/mock/keys/slow", data=json.dumps({"latency_ms": 3000}).encode(),
                                   method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(fault, timeout=10).read()
    try:
        before = finished_requests(front, "gpt-slow", 499)
        body = json.dumps({"model": "gpt-slow", "messages": [{"role": "user", "content": "take your time"}]}).encode()
        s = connect(front)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                  + b"\r\n\r\n" + body)
        time.sleep(0.3)
        s.close()
        left = time.monotonic()
        while finished_requests(front, "gpt-slow", 499) == before and time.monotonic() - left < 2.5:
            time.sleep(0.02)
        ended = time.monotonic() - left
        # Ended (as 499, nothing sent) when the client left, not when the provider answered.
        assert finished_requests(front, "gpt-slow", 499) == before + 1
        assert ended < 1.0, ended
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{slow_mock}/mock/keys/slow", method="DELETE"), timeout=10).read()
