"""The sync port against junk: a frame announced over the maximum is refused and counted, and a
flood of connections that never say hello cannot fill the log with warnings.
"""

import base64
import json
import os
import re
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import Process, free_port, wait_http  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))


def rejected(api: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=10).read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^bifrost_transport_rejected_total\{reason="(\w+)"\} (\S+)$', text, re.M)}


def test_oversized_frames_are_counted_and_junk_warnings_are_throttled(tmp_path):
    api, gossip = free_port(), free_port()
    config = {"providers": {"openai": {"type": "openai", "keys": [{"name": "k", "value": "sk-k", "models": ["m"]}]}},
              "cluster": {"enabled": True, "node_id": "solo", "bind_address": f"127.0.0.1:{api}",
                          "gossip": {"port": gossip}}}
    (tmp_path / "bifrost.json").write_text(json.dumps(config))
    env = dict(os.environ, BIFROST_CLUSTER_KEY=base64.b64encode(os.urandom(32)).decode())
    p = Process([os.path.join(BIN, "bifrost"), "serve", "--config", str(tmp_path / "bifrost.json"),
                 "--data", str(tmp_path / "data")], env=env)
    try:
        wait_http(f"http://127.0.0.1:{api}/health")
        before = rejected(api).get("oversized", 0)
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", gossip), timeout=5)
            s.sendall(b"\xff\xff\xff\xff")  # a 4 GiB frame announced
            s.settimeout(5)
            # The node may greet first; then it closes.
            while s.recv(65536):
                pass
            s.close()
        deadline = time.monotonic() + 5
        while rejected(api).get("oversized", 0) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rejected(api).get("oversized", 0) == before + 20
        warnings = p.output().count("sync connection dropped")
        assert 1 <= warnings <= 5, p.output(tail=2000)
    finally:
        p.stop()
