"""The `GET /ui` dashboard in a real browser against a real cluster.

Starts the real mock provider and real `bifrost serve` nodes on 127.0.0.1 (free ports), sends
traffic through every node, changes a key's weight through the admin API, then loads `/ui` of
one node in headless Chromium (Debian's `chromium` package, driven over the DevTools protocol
on a pipe) and checks what the live page shows: members, load, keys with traffic, latency,
error rate, weight and health, the new weight without a reload, events, alerts, and that it
fetched nothing but its own node. Screenshots and the rendered DOM go to `test-output/ui/`.

Only processes started here are signalled; every wait is bounded.

    BIFROST_BIN=.build/debug pytest -q Tests/ui
    BIFROST_UI_LARGE=1 ...    # also a real 30-node cluster (about 2 minutes on 2 cores)
"""

import base64
import html.parser
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import Process, free_port, free_port_block, wait_http  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.environ.get("BIFROST_BIN", os.path.join(REPO, ".build", "debug")))
OUTPUT = os.path.join(REPO, "test-output", "ui")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

VIRTUAL_KEY = "sk-ui-team-a-" + secrets.token_hex(8)
ADMIN_TOKEN = "admin-ui-" + secrets.token_hex(12)
KEYS = ["gpt-key-1", "gpt-key-2", "claude-key-1"]
NEW_WEIGHT = 0.37


def http(method: str, url: str, body=None, headers=None, timeout: float = 15.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json",
                                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str):
    status, _, body = http("GET", url, timeout=5)
    assert status == 200, f"{url}: HTTP {status} {body[:300]!r}"
    return json.loads(body)


def eventually(check, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Calls `check` until it returns a truthy value or the deadline passes (then fails)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last error: {last})")


# --- the cluster ---------------------------------------------------------------------------------


def cluster_config(mock_url: str) -> dict:
    return {
        "providers": {
            "openai": {
                "type": "openai", "base_url": f"{mock_url}/v1",
                "keys": [
                    {"name": "gpt-key-1", "value": "sk-upstream-ui-1", "models": ["gpt-4o-mini"], "weight": 0.8},
                    {"name": "gpt-key-2", "value": "sk-upstream-ui-2", "models": ["gpt-4o-mini"], "weight": 0.2},
                ],
            },
            "anthropic": {
                "type": "anthropic", "base_url": mock_url,
                "keys": [{"name": "claude-key-1", "value": "sk-upstream-ui-3",
                          "models": ["claude-3-5-haiku-latest"], "weight": 1}],
            },
        },
        "virtual_keys": [{"name": "team-a", "value": "env.UI_TEST_VIRTUAL_KEY", "models": ["*"],
                          "limits": {"rpm": 100000}, "budget": {"max_usd": 100.0, "period": "1mo"}}],
        "admin": {"token": "env.UI_TEST_ADMIN_TOKEN"},
        # A real rule that holds as soon as the cluster has formed, so "active alerts" has a row.
        "alerts": [{"name": "ui-test cluster formed", "condition": "nodes_healthy >= 3", "scope": "cluster",
                    "action": "notify"}],
        "cluster": {
            "enabled": True,
            "gossip": {"interval": "200ms", "timeout": "1s"},
            "failover": {"detection_threshold": 3},
            # Only the operator changes weights, so the weight the test sets stays put.
            "load_balancing": {"weight_adjustment": "manual"},
        },
    }


class Cluster:
    def __init__(self, count: int, root: str):
        self.count = count
        self.root = root
        self.processes: list[Process] = []
        self.names = [f"ui-node-{i + 1}" for i in range(count)]
        self.urls: dict[str, str] = {}
        self.mock_url = ""

    def start(self):
        mock_port = free_port()
        self.processes.append(Process([os.path.join(BIN, "bifrost-mock-provider"), "--port", str(mock_port)],
                                      os.path.join(self.root, "mock.log")))
        self.mock_url = f"http://127.0.0.1:{mock_port}"
        wait_http(self.mock_url + "/health", timeout=30)

        key = subprocess.run([os.path.join(BIN, "bifrost"), "keygen"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.strip()
        assert key, "bifrost keygen printed nothing"
        config = os.path.join(self.root, "bifrost.json")
        with open(config, "w") as f:
            json.dump(cluster_config(self.mock_url), f)
        env = dict(os.environ, BIFROST_CLUSTER_KEY=key, UI_TEST_ADMIN_TOKEN=ADMIN_TOKEN,
                   UI_TEST_VIRTUAL_KEY=VIRTUAL_KEY)
        api, gossip = free_port_block(self.count)
        for i, name in enumerate(self.names):
            peers = ",".join(f"127.0.0.1:{api + j}" for j in range(self.count) if j != i)
            args = [os.path.join(BIN, "bifrost"), "serve", "--config", config, "--cluster", "--node-id", name,
                    "--bind", f"127.0.0.1:{api + i}", "--gossip-port", str(gossip + i), "--peers", peers,
                    "--data", os.path.join(self.root, name)]
            self.processes.append(Process(args, os.path.join(self.root, f"{name}.log"), env=env))
            self.urls[name] = f"http://127.0.0.1:{api + i}"
        for name in self.names:
            wait_http(self.urls[name] + "/health", timeout=60)

    def alive_seen_by(self, name: str) -> set[str]:
        nodes = get_json(self.urls[name] + "/cluster/nodes").get("nodes", [])
        return {n["node_id"] for n in nodes if n.get("status") == "alive"}

    def wait_formed(self, timeout: float):
        everyone = set(self.names)
        eventually(lambda: all(self.alive_seen_by(n) == everyone for n in self.names), timeout,
                   interval=0.5, what=f"every node seeing {self.count} alive members")

    def stop(self):
        # Ask every process first, so the nodes drain in parallel; then wait, bounded, and kill.
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            p.stop(timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- {os.path.basename(p.log_path)}\n{p.output(2000)}" for p in self.processes)


def start_cluster(count: int, tmp_path_factory, formed_timeout: float):
    missing = [b for b in ("bifrost", "bifrost-mock-provider") if not os.access(os.path.join(BIN, b), os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not built in {BIN} (set BIFROST_BIN)")
    cluster = Cluster(count, str(tmp_path_factory.mktemp(f"ui-cluster-{count}")))
    try:
        cluster.start()
        cluster.wait_formed(formed_timeout)
    except BaseException:
        print(cluster.logs())
        cluster.stop()
        raise
    return cluster


def send_traffic(cluster: Cluster, per_node: int):
    auth = {"authorization": f"Bearer {VIRTUAL_KEY}"}
    for name in cluster.names:
        url = cluster.urls[name]
        for i in range(per_node):
            status, _, body = http("POST", url + "/v1/chat/completions", {
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hello {name} {i}"}]}, auth)
            assert status == 200, f"chat completion on {name}: HTTP {status} {body[:300]!r}"
        status, _, body = http("POST", url + "/v1/messages", {
            "model": "claude-3-5-haiku-latest", "max_tokens": 16,
            "messages": [{"role": "user", "content": f"hello {name}"}]}, {"x-api-key": VIRTUAL_KEY})
        assert status == 200, f"messages on {name}: HTTP {status} {body[:300]!r}"


def change_weight(url: str, key: str, weight: float):
    status, _, body = http("PUT", f"{url}/admin/keys/{key}/weight?wait=replicated",
                           {"weight": weight, "reason": "ui test"}, {"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200, f"weight change: HTTP {status} {body[:300]!r}"
    answer = json.loads(body)
    assert answer.get("kind") == "weight.changed", answer
    assert answer.get("replicated") is True, answer
    return answer


# --- the browser ---------------------------------------------------------------------------------


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
    NUL-terminated JSON on fds 3 and 4, no extra package). It loads a page once and reads it
    while the page's own polling updates it; it records every request the page made."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 30.0):
        if not CHROMIUM:
            pytest.fail("chromium is not installed (apt-get install chromium)")
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="bifrost-ui-chromium-")
        self.events: list[dict] = []
        self.buffer = b""
        self.next_id = 0
        self.session = None
        commands_r, self.commands_w = os.pipe()
        self.replies_r, replies_w = os.pipe()
        self.stderr = open(self.profile + ".log", "wb")
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                # Nothing but loopback resolves: the page must render without anything from outside.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "about:blank"]
        # bash (dash takes one-digit fds only) puts the pipes on fds 3 and 4, then becomes Chromium;
        # a new session, so the browser's helper processes share one process group `close` ends.
        self.proc = subprocess.Popen(["/bin/bash", "-c", f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w}', *args],
                                     pass_fds=(commands_r, replies_w), stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, start_new_session=True)
        os.close(commands_r)
        os.close(replies_w)
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, session=False, timeout=timeout)
            self.session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                     session=False)["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def send(self, method: str, params=None, session=None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not False and (session or self.session):
            message["sessionId"] = session or self.session
        os.write(self.commands_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                if "method" in reply:
                    self.events.append(reply)
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.replies_r], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"chromium did not answer {method} within {timeout}s")
            chunk = os.read(self.replies_r, 1 << 20)
            if not chunk:
                raise EOFError(f"chromium exited during {method}: {self.log()}")
            self.buffer += chunk

    def navigate(self, url: str, timeout: float = 30.0):
        loads = self.count("Page.loadEventFired")
        result = self.send("Page.navigate", {"url": url})
        assert not result.get("errorText"), f"navigating to {url}: {result}"
        eventually(lambda: self.send("Runtime.evaluate", {"expression": "1"}) is not None
                   and self.count("Page.loadEventFired") > loads, timeout, what=f"{url} loaded")

    def count(self, method: str) -> int:
        return sum(1 for e in self.events if e.get("method") == method)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def dom(self):
        return DOM(self.evaluate("document.documentElement.outerHTML")).root

    def wait_for(self, ready, timeout: float, what: str):
        """Reads the live page until `ready(dom)` returns None (else it names what is missing)."""
        deadline = time.monotonic() + timeout
        while True:
            raw = self.evaluate("document.documentElement.outerHTML")
            dom = DOM(raw).root
            problem = ready(dom)
            if problem is None:
                return dom, raw
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not shown within {timeout}s: {problem}\n{raw[:6000]}")
            time.sleep(0.5)

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def problems(self) -> list[str]:
        """Script exceptions, console errors and blocked loads (CSP violations among them)."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(json.dumps(params.get("args", []))[:500])
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                out.append(f"load failed: {params.get('errorText')} {params.get('blockedReason', '')}")
        return out

    def screenshot(self, path: str, full_page: bool = False):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        params = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": self.width, "height": max(self.height, size["height"]),
                                "scale": 1})
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
        with open(path, "wb") as f:
            f.write(data)
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")

    def log(self) -> str:
        self.stderr.flush()
        with open(self.stderr.name, encoding="utf-8", errors="replace") as f:
            return f.read()[-3000:]

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", session=False, timeout=5)
                except Exception:  # noqa: BLE001 - ended below either way
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # this browser's group only
            except (ProcessLookupError, PermissionError):
                pass
            if self.proc.poll() is None:
                self.proc.wait(timeout=10)
            for fd in (self.commands_w, self.replies_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)
            try:
                os.remove(self.stderr.name)
            except OSError:
                pass


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children: list["Element | str"] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Element):
                yield c
                yield from c.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        return [e for e in self.iter() if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
                and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, *args, **kwargs):
        found = self.find_all(*args, **kwargs)
        return found[0] if found else None

    def by_id(self, id_: str):
        return next((e for e in self.iter() if e.attrs.get("id") == id_), None)


class DOM(html.parser.HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", [], None)
        self.current = self.root
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def cell_text(row, cls: str) -> str:
    found = row.find("td", cls=cls)
    assert found is not None, f"no .{cls} cell in row {row.attrs}"
    return found.text().strip()


# --- self-containment ----------------------------------------------------------------------------

URL_IN_PAGE = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//"""
                         r"""|@import|\bimport\s*\(|importScripts|new\s+(?:WebSocket|EventSource|Worker)\s*\(\s*["'`]"""
                         r"""\s*(?:wss?|https?):""", re.IGNORECASE)


def check_self_contained(url: str):
    status, headers, body = http("GET", url + "/ui")
    assert status == 200
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    # No reference to anything outside the node: no absolute or protocol-relative URL in a
    # src/href/url(), no module or CSS import, no socket to another host.
    offending = URL_IN_PAGE.findall(page)
    assert not offending, f"/ui references outside resources: {offending}"
    for m in re.finditer(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, re.IGNORECASE):
        assert "://" not in m.group(1) and not m.group(1).startswith("//"), m.group(0)
    for m in re.finditer(r"""fetch\(\s*([^,)]*)""", page):
        assert "://" not in m.group(1) and "http" not in m.group(1), f"fetch of {m.group(1)}"
    # The browser enforces it too: only this origin may be fetched, nothing else loads at all.
    csp = headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    assert not re.search(r"(?:script|style|img|font|connect)-src[^;]*(?:https?:|\*)", csp), csp
    return page



# --- what the page shows -------------------------------------------------------------------------


def rows(dom, attribute: str) -> dict:
    """Table rows (`tr[attribute]`) by the attribute's value."""
    return {e.attrs[attribute]: e for e in dom.iter() if e.tag == "tr" and attribute in e.attrs}


def key_rows(dom) -> dict:
    return rows(dom, "data-key")


def requests_shown(dom, key: str) -> int:
    return int(cell_text(key_rows(dom)[key], "requests").replace(",", ""))


# Reads the rendered layout: anything cut off or wider than the window?
READABILITY = """(() => {
  const cut = (e) => e.scrollWidth > e.clientWidth + 1;
  return {
    viewport: innerWidth,
    page_width: document.documentElement.scrollWidth,
    truncated_load_names: [...document.querySelectorAll('.load-row .name')].filter(cut).map((e) => e.textContent),
    scrolling_tables: [...document.querySelectorAll('.scroll')].filter(cut).map((e) => e.parentElement.id),
    min_font_px: Math.min(...[...document.querySelectorAll('td, th, dd, dt, h2, h3')]
      .map((e) => parseFloat(getComputedStyle(e).fontSize))),
  };
})()"""


def check_readable(browser: Browser):
    layout = browser.evaluate(READABILITY)
    assert layout["page_width"] <= layout["viewport"], f"the page scrolls sideways: {layout}"
    assert not layout["truncated_load_names"], f"node names cut off: {layout}"
    assert not layout["scrolling_tables"], f"tables wider than their panel: {layout}"
    assert layout["min_font_px"] >= 11, layout
    return layout


def check_only_this_node_fetched(browser: Browser, base: str):
    urls = browser.requested_urls()
    assert urls, "the browser recorded no request"
    outside = [u for u in urls if not u.startswith(base + "/")]
    assert not outside, f"the page fetched from elsewhere: {outside}"
    assert not browser.problems(), f"errors in the page: {browser.problems()}"
    return urls


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    cluster = start_cluster(3, tmp_path_factory, formed_timeout=60)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def browser():
    b = Browser(1400, 1000)
    try:
        yield b
    finally:
        b.close()


def test_dashboard_is_self_contained_on_every_node(cluster3):
    for name in cluster3.names:
        page = check_self_contained(cluster3.urls[name])
        assert "<title>Bifrost</title>" in page


def test_dashboard_shows_the_live_cluster_in_chromium(cluster3, browser):
    c = cluster3
    viewer, writer = c.names[0], c.names[1]
    send_traffic(c, per_node=4)  # 12 chat completions on the openai keys, 3 messages on claude-key-1
    url = c.urls[viewer] + "/ui"
    browser.navigate(url)

    def first_view(dom):
        members = rows(dom, "data-node")
        if set(members) != set(c.names):
            return f"member rows {sorted(members)}"
        statuses = {n: cell_text(r, "status") for n, r in members.items()}
        if set(statuses.values()) != {"alive"}:
            return f"statuses {statuses}"
        keys = key_rows(dom)
        if set(keys) != set(KEYS):
            return f"key rows {sorted(keys)}"
        openai = requests_shown(dom, "gpt-key-1") + requests_shown(dom, "gpt-key-2")
        if (openai, requests_shown(dom, "claude-key-1")) != (12, 3):
            return f"requests shown: openai {openai}, claude {requests_shown(dom, 'claude-key-1')}"
        if not rows(dom, "data-alert"):
            return "no active alert"
        return None

    dom, _ = browser.wait_for(first_view, 60, "members, keys and traffic")
    assert cell_text(key_rows(dom)["gpt-key-2"], "weight") == "0.2"
    loads = browser.count("Page.loadEventFired")

    # The weight changes on another node; the open page shows it on its own (no reload).
    change_weight(c.urls[writer], "gpt-key-2", NEW_WEIGHT)

    def weight_shown(dom):
        weight = cell_text(key_rows(dom)["gpt-key-2"], "weight")
        if weight != "0.37":
            return f"gpt-key-2 weight {weight}"
        origins = [cell_text(r, "origin") for r in dom.find_all("tr", data_kind="weight.changed")]
        if writer not in origins:
            return f"weight.changed events from {origins}"
        return None

    browser.wait_for(weight_shown, 30, "the new weight")
    # More traffic: the same page shows it too.
    send_traffic(c, per_node=1)
    dom, raw = browser.wait_for(lambda d: None if requests_shown(d, "claude-key-1") == 6
                                else f"claude-key-1 requests {requests_shown(d, 'claude-key-1')}",
                                30, "new traffic")
    assert browser.count("Page.loadEventFired") == loads, "the page was reloaded"
    polled = [u for u in browser.requested_urls() if u.endswith("/cluster/metrics")]
    assert len(polled) >= 3, f"the page polled /cluster/metrics {len(polled)} times"
    assert sum(1 for u in browser.requested_urls() if u.endswith("/ui")) == 1

    # Header: which node this is, health and convergence, no fetch error.
    assert dom.by_id("node-name").text() == viewer
    assert dom.by_id("nodes-healthy").text() == "3 / 3"
    assert re.fullmatch(r"\d+(\.\d+)? m?s", dom.by_id("convergence").text()), dom.by_id("convergence").text()
    assert "hidden" in dom.by_id("error").attrs, dom.by_id("error").text()
    assert dom.by_id("updated").text().startswith("updated ")
    assert dom.by_id("members-count").text() == "3 of 3 alive"

    # Members: every node, alive, with its API address; this node marked.
    for name in c.names:
        row = dom.find("tr", data_node=name)
        assert row is not None, name
        assert cell_text(row, "name").startswith(name)
        assert cell_text(row, "status") == "alive"
        assert cell_text(row, "address").endswith(c.urls[name].removeprefix("http://"))
    assert "this node" in cell_text(dom.find("tr", data_node=viewer), "name")

    # Load distribution: a bar per node, shares adding up to 100 %, each node took traffic.
    load = {r.attrs["data-node"]: r for r in dom.by_id("load").find_all("div", cls="load-row")}
    assert set(load) == set(c.names)
    shares = {n: float(r.find("span", cls="value").text().rstrip("%")) for n, r in load.items()}
    assert 99 <= sum(shares.values()) <= 101, shares
    assert all(v > 0 for v in shares.values()), shares

    # Providers and keys: traffic, requests, latency, error rate, weight, health, breaker.
    providers = [h.attrs.get("data-provider") for h in dom.find_all("h3", cls="provider")]
    assert providers == ["anthropic", "openai"], providers
    keys = key_rows(dom)
    for key in KEYS:
        row = keys[key]
        assert cell_text(row, "key") == key
        assert re.fullmatch(r"\d+(\.\d+)?%", cell_text(row, "traffic")), cell_text(row, "traffic")
        assert re.fullmatch(r"\d+(\.\d+)? m?s", cell_text(row, "latency")), cell_text(row, "latency")
        assert cell_text(row, "error-rate") == "0.00%"
        assert cell_text(row, "health") in {"healthy", "degraded", "unhealthy"}, cell_text(row, "health")
        assert cell_text(row, "breaker") in {"closed", "half open", "open"}, cell_text(row, "breaker")
    assert cell_text(keys["gpt-key-2"], "weight") == "0.37"
    assert cell_text(keys["gpt-key-1"], "weight") == "0.8"
    assert cell_text(keys["claude-key-1"], "weight") == "1"
    # A key's traffic is its share of all requests (the provider heading shows the provider's).
    share = {h.attrs["data-provider"]: float(h.find("span", cls="share").text().split("%")[0])
             for h in dom.find_all("h3", cls="provider")}
    traffic = {k: float(cell_text(keys[k], "traffic").rstrip("%")) for k in KEYS}
    assert abs(share["anthropic"] - 6 / 21 * 100) < 0.1 and abs(traffic["claude-key-1"] - share["anthropic"]) < 0.1
    assert abs(traffic["gpt-key-1"] + traffic["gpt-key-2"] - share["openai"]) < 0.2, (traffic, share)
    assert requests_shown(dom, "gpt-key-1") + requests_shown(dom, "gpt-key-2") == 15

    # Spend: the virtual key's against its budget, and the priced provider keys'.
    spend = {r.attrs["data-account"]: r for r in dom.by_id("spend").find_all("div", cls="spend-row")}
    assert {"vk:team-a", "key:gpt-key-1", "key:gpt-key-2"} <= set(spend), list(spend)
    assert re.fullmatch(r"\$0\.\d{6}", spend["vk:team-a"].find("span", cls="total").text()), spend["vk:team-a"].text()
    budget = spend["vk:team-a"].find("div", cls="budget").text()
    assert re.search(r"of \$100\.00 / 1mo · resets \d{4}-\d\d-01$", budget), budget
    assert spend["key:gpt-key-1"].find("div", cls="budget") is None

    # Active alerts: the configured rule, firing for the cluster.
    alerts = rows(dom, "data-alert")
    formed = alerts.get("ui-test cluster formed/cluster")
    assert formed is not None, list(alerts)
    assert formed.find("span", cls="scope").text() == "cluster" and formed.find("span", cls="action").text() == "notify"
    assert cell_text(formed, "value") == "3"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", cell_text(formed, "since")), cell_text(formed, "since")

    # Recent events: time, kind and origin of each.
    events = dom.by_id("events").find_all("tr", cls=None)
    kinds = [r.attrs["data-kind"] for r in events if "data-kind" in r.attrs]
    assert "weight.changed" in kinds and "usage.recorded" in kinds, kinds
    for row in events:
        if "data-kind" in row.attrs:
            assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", cell_text(row, "time")), cell_text(row, "time")
            assert cell_text(row, "kind") == row.attrs["data-kind"]
            assert cell_text(row, "origin") in c.names

    os.makedirs(OUTPUT, exist_ok=True)
    assert browser.screenshot(os.path.join(OUTPUT, "dashboard-3-nodes.png")) == (1400, 1000)
    browser.screenshot(os.path.join(OUTPUT, "dashboard-3-nodes-full.png"), full_page=True)
    with open(os.path.join(OUTPUT, "dashboard-3-nodes.html"), "w") as f:
        f.write(raw)

    # Nothing but this node was fetched; no script error, no blocked load; nothing cut off.
    check_only_this_node_fetched(browser, c.urls[viewer])
    check_readable(browser)


def test_every_node_serves_the_dashboard(cluster3, browser):
    for name in cluster3.names:
        browser.navigate(cluster3.urls[name] + "/ui")

        def shown(dom, name=name):
            if dom.by_id("node-name").text() != name:
                return f"node name {dom.by_id('node-name').text()!r}"
            if {r.attrs["data-node"] for r in dom.find_all("tr") if "data-node" in r.attrs} != set(cluster3.names):
                return "member rows"
            return None

        browser.wait_for(shown, 30, f"/ui of {name}")
    for name in cluster3.names:
        assert any(u.startswith(cluster3.urls[name] + "/cluster/") for u in browser.requested_urls()), name
    assert not browser.problems(), browser.problems()


@pytest.mark.skipif(not os.environ.get("BIFROST_UI_LARGE"), reason="set BIFROST_UI_LARGE=1 for the 30-node run")
def test_dashboard_stays_readable_at_30_nodes(tmp_path_factory, browser):
    cluster = start_cluster(30, tmp_path_factory, formed_timeout=240)
    try:
        send_traffic(cluster, per_node=1)
        viewer = cluster.names[0]
        browser.navigate(cluster.urls[viewer] + "/ui")

        def ready(dom):
            members = [r for r in dom.find_all("tr") if "data-node" in r.attrs]
            if sorted(r.attrs["data-node"] for r in members) != sorted(cluster.names):
                return f"{len(members)} member rows"
            if dom.by_id("members-count").text() != "30 of 30 alive":
                return dom.by_id("members-count").text()
            if len(dom.by_id("load").find_all("div", cls="load-row")) != 30:
                return "load rows"
            if requests_shown(dom, "claude-key-1") != 30:
                return f"claude-key-1 requests {requests_shown(dom, 'claude-key-1')}"
            return None

        dom, raw = browser.wait_for(ready, 120, "30 members")
        # In natural order (ui-node-2 before ui-node-10), in the table and the load bars.
        assert [r.attrs["data-node"] for r in dom.find_all("tr") if "data-node" in r.attrs] == cluster.names
        assert [r.attrs["data-node"] for r in dom.by_id("load").find_all("div", cls="load-row")] == cluster.names
        os.makedirs(OUTPUT, exist_ok=True)
        with open(os.path.join(OUTPUT, "dashboard-30-nodes.html"), "w") as f:
            f.write(raw)
        assert browser.screenshot(os.path.join(OUTPUT, "dashboard-30-nodes.png")) == (1400, 1000)
        browser.screenshot(os.path.join(OUTPUT, "dashboard-30-nodes-full.png"), full_page=True)
        check_only_this_node_fetched(browser, cluster.urls[viewer])
        check_readable(browser)
    finally:
        cluster.stop()
