"""Ports and processes for the Python suites (Tests/sdk, Tests/ui): only processes started here
are signalled, and every wait is bounded."""

import contextlib
import json
import os
import random
import socket
import subprocess
import tempfile
import time
import urllib.request


def port_free(port: int, udp: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(count: int) -> tuple[int, int]:
    """`count` consecutive API ports and gossip ports at a constant offset (the node derives a
    peer's gossip port from its API port with its own offset), TCP and UDP free."""
    for _ in range(300):
        api = random.randint(20_000, 44_000)
        gossip = api + 10_000
        if all(port_free(api + i) and port_free(gossip + i) and port_free(gossip + i, udp=True)
               for i in range(count)):
            return api, gossip
    raise RuntimeError("no free port block")


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - keep polling until the deadline
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last}")


class Process:
    """A started program with its output in a log file (a temporary one unless `log_path`)."""

    def __init__(self, args, log_path=None, env=None):
        self.args = args
        if log_path is None:
            with tempfile.NamedTemporaryFile(prefix="bifrost-test-", suffix=".log", delete=False) as f:
                log_path = f.name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self, timeout: float = 10.0):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()

    def output(self, tail: int | None = None) -> str:
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        return text if tail is None else text[-tail:]


@contextlib.contextmanager
def running_node(bin_dir: str, config: dict, directory, port: int, env=None):
    """A `bifrost serve` with `config` (bound to 127.0.0.1:`port`) and its data under `directory`,
    its URL while it runs; its output is printed when anything inside the block fails."""
    path = directory / "bifrost.json"
    path.write_text(json.dumps(config))
    p = Process([os.path.join(bin_dir, "bifrost"), "serve", "--config", str(path), "--data", str(directory / "data")],
                env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        print(p.output())
        raise
    finally:
        p.stop()
