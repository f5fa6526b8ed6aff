"""Upstream calls over TLS: a real HTTPS provider on loopback, verified against network.ca_file."""

import json
import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import free_port, running_node  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))
TOKEN = "sk-tls-0123456789"


class Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Provider.seen.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                              "host": self.headers.get("Host"), "model": body.get("model")})
        reply = json.dumps({
            "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "over TLS"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def tls_provider(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], str(cert)
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def node(tls_provider, tmp_path_factory):
    provider_port, cert = tls_provider
    port = free_port()
    directory = tmp_path_factory.mktemp("tls-node")
    config = {
        "providers": {
            "trusted": {"type": "openai", "base_url": f"https://localhost:{provider_port}/v1",
                        "network": {"ca_file": cert, "timeout": "5s"},
                        "keys": [{"name": "tls-key", "value": "sk-upstream-tls", "models": ["gpt-tls"]}]},
            "untrusted": {"type": "openai", "base_url": f"https://localhost:{provider_port}/v1",
                          "network": {"timeout": "5s"},
                          "keys": [{"name": "plain-key", "value": "sk-upstream-plain", "models": ["gpt-untrusted"]}]},
        },
        "virtual_keys": [{"name": "team-a", "value": TOKEN, "models": ["*"]}],
        "cluster": {"bind_address": f"127.0.0.1:{port}", "gossip": {"port": free_port()}},
    }
    with running_node(BIN, config, directory, port) as url:
        yield url


def test_an_https_provider_is_called_over_verified_tls_with_keep_alive(node):
    client = openai.OpenAI(base_url=f"{node}/v1", api_key=TOKEN, max_retries=0)
    Provider.seen.clear()
    for _ in range(3):
        reply = client.chat.completions.create(model="gpt-tls", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "over TLS"
    assert [s["path"] for s in Provider.seen] == ["/v1/chat/completions"] * 3
    assert Provider.seen[0]["authorization"] == "Bearer sk-upstream-tls"
    assert Provider.seen[0]["host"] == f"localhost:{Provider.seen[0]['host'].split(':')[1]}"


def test_a_provider_certificate_the_node_does_not_trust_is_refused(node):
    client = openai.OpenAI(base_url=f"{node}/v1", api_key=TOKEN, max_retries=0)
    Provider.seen.clear()
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-untrusted", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code in (502, 503)
    assert Provider.seen == []
