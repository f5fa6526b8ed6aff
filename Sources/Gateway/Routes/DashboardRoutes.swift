import Hummingbird
import NIOCore

/// `GET /ui`: a live cluster dashboard served by every node.
///
/// One self-contained page (inline CSS and JavaScript, no framework, nothing fetched from
/// elsewhere: the Content-Security-Policy forbids it) that polls this node's `/cluster/nodes`,
/// `/cluster/metrics` and `/cluster/events` every 2 s with relative URLs, so it also works behind
/// a reverse proxy that mounts the node under a path prefix. Every value from those endpoints
/// reaches the DOM through `textContent`, attributes or `style.width` numbers, never as markup.
///
/// Stable hooks for tests and scripts: member rows `tr[data-node]`, load bars
/// `.load-row[data-node]`, key rows `tr[data-key]` with cells `.traffic`, `.latency`,
/// `.error-rate`, `.weight`, `.health`, `.breaker`, alert rows `tr[data-alert]`, spend rows
/// `.spend-row[data-account]` (`vk:<name>` or `key:<id>`, with `.total` and, under a budget,
/// `.budget`) and event rows `tr[data-kind]`; `#node-name`, `#convergence`, `#nodes-healthy`
/// and `#error` in the header.
public enum DashboardRoutes {
    /// How often the page polls, in milliseconds (the page's `POLL_MS`).
    public static let pollIntervalMillis = 2_000

    public static func register<Context: RequestContext>(on router: Router<Context>) {
        router.get("ui") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [
                    .contentType: "text/html; charset=utf-8",
                    .contentSecurityPolicy:
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                        + "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
                    .xContentTypeOptions: "nosniff",
                    .cacheControl: "no-cache",
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(string: page)))
        }
    }

    /// The page. A raw string literal, so the JavaScript's backslashes stay as written.
    static let page = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <link rel="icon" href="data:,">
        <title>Bifrost</title>
        <style>
        :root {
          --bg: #f6f7f9; --panel: #ffffff; --text: #1f2328; --muted: #656d76; --line: #d8dee4;
          --head: #f0f2f5; --bar: #0969da; --bar-track: #e6eaef;
          --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --off: #6e7781; --info: #0969da; --accent: #8250df;
          --ok-bg: #dafbe1; --warn-bg: #fff8c5; --bad-bg: #ffebe9; --off-bg: #eaeef2; --info-bg: #ddf4ff;
          --accent-bg: #fbefff;
        }
        @media (prefers-color-scheme: dark) {
          :root {
            --bg: #0d1117; --panel: #161b22; --text: #e6edf3; --muted: #8d96a0; --line: #30363d;
            --head: #1c2128; --bar: #4493f8; --bar-track: #262c36;
            --ok: #3fb950; --warn: #d29922; --bad: #f85149; --off: #8d96a0; --info: #4493f8; --accent: #ab7df8;
            --ok-bg: #12261e; --warn-bg: #272115; --bad-bg: #2d1417; --off-bg: #21262d; --info-bg: #121d2f;
            --accent-bg: #231c33;
          }
        }
        * { box-sizing: border-box; }
        body {
          margin: 0; background: var(--bg); color: var(--text);
          font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
        }
        header {
          display: flex; flex-wrap: wrap; align-items: center; gap: 12px 28px;
          padding: 14px 24px; background: var(--panel); border-bottom: 1px solid var(--line);
        }
        h1 { margin: 0; font-size: 18px; font-weight: 600; white-space: nowrap; }
        h1 .node { color: var(--muted); font-weight: 500; }
        .stats { display: flex; flex-wrap: wrap; gap: 8px 24px; margin: 0; }
        .stat dt { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
        .stat dd { margin: 0; font-size: 16px; font-weight: 600; font-variant-numeric: tabular-nums; }
        .status-line { margin-left: auto; color: var(--muted); font-size: 12px; text-align: right; }
        #error { color: var(--bad); font-weight: 600; }
        main {
          display: grid; gap: 16px; padding: 16px 24px 32px;
          grid-template-columns: minmax(0, 2fr) minmax(0, 1fr);
          grid-template-areas: "members members" "providers side" "events events";
        }
        @media (max-width: 1000px) {
          main { grid-template-columns: minmax(0, 1fr); grid-template-areas: "members" "providers" "side" "events"; }
        }
        #members-section { grid-area: members; }
        #providers-section { grid-area: providers; }
        #side { grid-area: side; display: flex; flex-direction: column; gap: 16px; min-width: 0; }
        #events-section { grid-area: events; }
        section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
        h2 { margin: 0 0 10px; font-size: 14px; font-weight: 600; }
        h2 .count { color: var(--muted); font-weight: 400; margin-left: 6px; }
        h3 { margin: 14px 0 6px; font-size: 13px; font-weight: 600; }
        h3:first-child { margin-top: 0; }
        h3 .share { color: var(--muted); font-weight: 400; margin-left: 6px; }
        .scroll { overflow-x: auto; }
        table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
        th, td { padding: 5px 10px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
        th {
          background: var(--head); font-size: 11px; font-weight: 600; text-transform: uppercase;
          letter-spacing: .04em; color: var(--muted);
        }
        tbody tr:last-child td { border-bottom: none; }
        td.num, th.num { text-align: right; }
        td.summary { white-space: normal; overflow-wrap: anywhere; min-width: 24ch; }
        td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
        .muted { color: var(--muted); }
        .empty { color: var(--muted); padding: 6px 0; }
        .pill {
          display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
          line-height: 20px; background: var(--off-bg); color: var(--off);
        }
        .pill::before { content: "\25CF\00A0"; font-size: 10px; vertical-align: 1px; }
        .pill.ok { background: var(--ok-bg); color: var(--ok); }
        .pill.warn { background: var(--warn-bg); color: var(--warn); }
        .pill.bad { background: var(--bad-bg); color: var(--bad); }
        .pill.info { background: var(--info-bg); color: var(--info); }
        .pill.accent { background: var(--accent-bg); color: var(--accent); }
        .pill.plain::before { content: none; }
        .self { margin-left: 6px; font-size: 11px; color: var(--muted); }
        .bar { position: relative; height: 8px; min-width: 60px; background: var(--bar-track); border-radius: 4px; }
        .bar > span { position: absolute; inset: 0 auto 0 0; background: var(--bar); border-radius: 4px; }
        .traffic-cell { display: flex; align-items: center; gap: 8px; }
        .traffic-cell .bar { flex: 1 1 60px; }
        .traffic-cell .value { min-width: 48px; text-align: right; }
        .load-row {
          display: grid; grid-template-columns: minmax(70px, max-content) minmax(60px, 1fr) 52px;
          gap: 10px; align-items: center; padding: 3px 0;
        }
        .load-row .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
        .load-row .value { text-align: right; font-variant-numeric: tabular-nums; }
        .spend-row {
          display: grid; grid-template-columns: minmax(70px, 1fr) 32px max-content;
          gap: 4px 10px; align-items: center; padding: 4px 0;
        }
        .spend-row .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
        .spend-row .kind { font-size: 11px; color: var(--muted); }
        .spend-row .value { text-align: right; font-variant-numeric: tabular-nums; }
        .spend-row .budget { grid-column: 1 / -1; display: flex; align-items: center; gap: 8px; }
        .spend-row .budget .bar { flex: 1 1 60px; }
        /* The alerts panel is a third of the width: a rule's scope and action sit under its
           name, and long names wrap rather than push "Since" out of sight. */
        #alerts td.rule { white-space: normal; overflow-wrap: break-word; }
        #alerts td { vertical-align: top; }
        .alert-detail { font-size: 12px; margin-top: 2px; }
        </style>
        </head>
        <body>
        <header>
          <h1>Bifrost <span class="node" id="node-name">connecting…</span></h1>
          <dl class="stats">
            <div class="stat"><dt>Nodes healthy</dt><dd id="nodes-healthy">–</dd></div>
            <div class="stat"><dt>Convergence</dt><dd id="convergence">–</dd></div>
            <div class="stat"><dt>Propagation p50 / p99</dt><dd id="propagation">–</dd></div>
            <div class="stat"><dt>Gossip</dt><dd id="gossip">–</dd></div>
            <div class="stat"><dt>Migration rate</dt><dd id="migration">–</dd></div>
          </dl>
          <div class="status-line"><div id="updated">not updated yet</div><div id="error" hidden></div></div>
        </header>
        <main>
          <section id="members-section">
            <h2>Members <span class="count" id="members-count"></span></h2>
            <div class="scroll">
              <table id="members">
                <thead><tr>
                  <th>Node</th><th>Status</th><th class="num">Incarnation</th><th class="num">Last seen</th>
                  <th class="num">CPU</th><th class="num">Memory</th><th class="num">In flight</th>
                  <th class="num">Loop lag</th><th class="num">Log events</th><th class="num">Log size</th>
                  <th>API address</th>
                </tr></thead>
                <tbody></tbody>
              </table>
            </div>
          </section>
          <section id="providers-section">
            <h2>Providers <span class="count">last 5 minutes, whole cluster</span></h2>
            <div id="providers"><div class="empty">Loading…</div></div>
          </section>
          <div id="side">
            <section id="alerts-section">
              <h2>Active alerts <span class="count" id="alerts-count"></span></h2>
              <div id="alerts"><div class="empty">Loading…</div></div>
            </section>
            <section id="load-section">
              <h2>Load distribution <span class="count">admitted requests, last 5 minutes</span></h2>
              <div id="load"><div class="empty">Loading…</div></div>
            </section>
            <section id="spend-section">
              <h2>Spend <span class="count">whole cluster, USD</span></h2>
              <div id="spend"><div class="empty">Loading…</div></div>
            </section>
          </div>
          <section id="events-section">
            <h2>Recent events <span class="count">this node's log, newest first</span></h2>
            <div class="scroll">
              <table id="events">
                <thead><tr><th>Time (UTC)</th><th>Kind</th><th>Origin</th><th>Summary</th></tr></thead>
                <tbody></tbody>
              </table>
            </div>
          </section>
        </main>
        <script>
        "use strict";
        const POLL_MS = 2000;
        const EVENTS_LIMIT = 30;
        // The node's root, relative to this page (…/ui or …/ui/), so a path prefix keeps working.
        const BASE = location.pathname.replace(/ui\/?$/, "");
        const STATUS_CLASS = { alive: "ok", suspect: "warn", dead: "bad", left: "off" };
        const HEALTH_CLASS = { healthy: "ok", degraded: "warn", unhealthy: "bad" };
        const BREAKER_CLASS = { closed: "ok", half_open: "warn", open: "bad" };
        const KIND_CLASS = {
          "usage.recorded": "info", "weight.changed": "accent", "config.updated": "accent",
          "membership.changed": "warn", "alert.fired": "bad", "ratelimit.increment": "off",
          "usage.aggregated": "off"
        };
        let members = [];

        function $(id) { return document.getElementById(id); }

        /** An element with a class and text; text always goes through textContent. */
        function el(tag, className, text) {
          const node = document.createElement(tag);
          if (className) node.className = className;
          if (text !== undefined && text !== null) node.textContent = String(text);
          return node;
        }

        function cell(row, text, className) {
          const td = el("td", className, text);
          row.appendChild(td);
          return td;
        }

        /** A coloured label; the class comes from a fixed table, never from the data itself. */
        function pill(text, classes) {
          const label = String(text ?? "unknown");
          const kind = Object.hasOwn(classes, label) ? classes[label] : "off";
          return el("span", "pill " + kind, label.replace("_", " "));
        }

        function bar(percent) {
          const track = el("div", "bar");
          const fill = el("span");
          fill.style.width = Math.max(0, Math.min(100, Number(percent) || 0)) + "%";
          track.appendChild(fill);
          return track;
        }

        function num(value) { return typeof value === "number" && isFinite(value) ? value : 0; }

        function ms(value) {
          const v = num(value);
          if (v >= 1000) return (v / 1000).toFixed(2) + " s";
          return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms";
        }

        function ago(value) {
          const v = num(value);
          if (v < 1) return "now";
          return v < 1000 ? v.toFixed(0) + " ms ago" : (v / 1000).toFixed(1) + " s ago";
        }

        function bytes(value) {
          const v = num(value);
          if (v >= 1 << 30) return (v / (1 << 30)).toFixed(2) + " GiB";
          if (v >= 1 << 20) return (v / (1 << 20)).toFixed(1) + " MiB";
          if (v >= 1 << 10) return (v / (1 << 10)).toFixed(1) + " KiB";
          return v.toFixed(0) + " B";
        }

        function percent(value, digits) { return num(value).toFixed(digits) + "%"; }

        function weight(value) { return String(Number(num(value).toFixed(4))); }

        /** Natural order, so node-2 comes before node-10. */
        const NATURAL = new Intl.Collator("en", { numeric: true });
        function byName(a, b) { return NATURAL.compare(String(a), String(b)); }

        function empty(container, text) { container.replaceChildren(el("div", "empty", text)); }

        function renderNodes(body) {
          members = (Array.isArray(body.nodes) ? body.nodes : []).slice().sort((a, b) => byName(a.node_id, b.node_id));
          const self = members.find((m) => m.self);
          if (self) {
            $("node-name").textContent = self.node_id;
            document.title = "Bifrost · " + self.node_id;
          }
          const alive = members.filter((m) => m.status === "alive").length;
          $("members-count").textContent = alive + " of " + members.length + " alive";
          const rows = members.map((m) => {
            const h = m.health || {};
            const row = el("tr");
            row.dataset.node = m.node_id;
            const name = cell(row, m.node_id, "name");
            if (m.self) name.appendChild(el("span", "self", "this node"));
            cell(row, "", "status").appendChild(pill(m.status, STATUS_CLASS));
            cell(row, m.incarnation, "num incarnation");
            cell(row, m.self ? "–" : ago(m.last_seen_ms_ago), "num last-seen");
            cell(row, m.health ? percent(h.cpu_percent, 1) : "–", "num cpu");
            cell(row, m.health ? bytes(h.memory_bytes) : "–", "num memory");
            cell(row, m.health ? num(h.in_flight_requests) : "–", "num in-flight");
            cell(row, m.health ? ms(h.event_loop_lag_ms) : "–", "num lag");
            cell(row, m.health ? num(h.log_events).toLocaleString("en-US") : "–", "num log-events");
            cell(row, m.health ? bytes(h.log_bytes) : "–", "num log-bytes");
            cell(row, m.api_address, "mono address");
            return row;
          });
          $("members").tBodies[0].replaceChildren(...rows);
        }

        function renderMetrics(body) {
          const c = body.cluster_metrics || {};
          $("nodes-healthy").textContent = num(c.nodes_healthy) + " / " + num(c.nodes_total);
          $("convergence").textContent = ms(c.state_convergence_time_ms);
          $("propagation").textContent = ms(c.event_propagation_p50_ms) + " / " + ms(c.event_propagation_p99_ms);
          $("gossip").textContent = num(c.gossip_messages_per_second).toFixed(1) + " msg/s";
          $("migration").textContent = percent(num(c.request_migration_rate) * 100, 1);
          renderLoad(c.load_distribution || {});
          renderProviders(c.provider_performance || {});
          renderAlerts(Array.isArray(body.alerts) ? body.alerts : []);
          renderSpend(body.spend || {});
        }

        function usd(value) {
          const v = num(value);
          return "$" + (v !== 0 && Math.abs(v) < 0.01 ? v.toFixed(6) : v.toFixed(2));
        }

        // Every virtual key and provider key that spent or has a budget: all-time spend and, with a
        // budget, the current period's spend against it.
        function renderSpend(spend) {
          const container = $("spend");
          const rows = [];
          for (const [group, label] of [["virtual_keys", "vk"], ["provider_keys", "key"]]) {
            const accounts = spend[group] || {};
            for (const name of Object.keys(accounts).sort(byName)) {
              const a = accounts[name] || {};
              const row = el("div", "spend-row");
              row.dataset.account = label + ":" + name;
              row.append(el("span", "name", name), el("span", "kind", label), el("span", "value total", usd(a.total_usd)));
              const b = a.budget;
              if (b) {
                const used = num(b.max_usd) > 0 ? num(b.spent_usd) / num(b.max_usd) * 100 : 0;
                const budget = el("div", "budget");
                budget.append(bar(Math.min(100, used)), el("span", "value",
                  usd(b.spent_usd) + " of " + usd(b.max_usd) + " / " + b.period +
                  (b.resets_at ? " · resets " + String(b.resets_at).slice(0, 10) : "")));
                row.appendChild(budget);
              }
              rows.push(row);
            }
          }
          if (rows.length === 0) return empty(container, "Nothing spent yet");
          container.replaceChildren(...rows);
        }

        function renderLoad(shares) {
          const names = new Set(Object.keys(shares));
          for (const m of members) if (m.status !== "left") names.add(m.node_id);
          const container = $("load");
          if (names.size === 0) return empty(container, "No nodes yet");
          const rows = [...names].sort(byName).map((name) => {
            const share = num(shares[name]) * 100;
            const row = el("div", "load-row");
            row.dataset.node = name;
            row.append(el("span", "name", name), bar(share), el("span", "value", percent(share, 1)));
            return row;
          });
          container.replaceChildren(...rows);
        }

        function renderProviders(providers) {
          const container = $("providers");
          const names = Object.keys(providers).sort(byName);
          if (names.length === 0) return empty(container, "No providers configured");
          const blocks = [];
          for (const name of names) {
            const p = providers[name] || {};
            const title = el("h3", "provider", name);
            title.dataset.provider = name;
            title.appendChild(el("span", "share", percent(p.total_traffic_percentage, 1) + " of traffic"));
            const table = el("table", "keys");
            const head = el("tr");
            for (const [label, cls] of [["Key", ""], ["Traffic", ""], ["Requests", "num"], ["Avg latency", "num"],
                                        ["Error rate", "num"], ["Weight", "num"], ["Health", ""], ["Breaker", ""]]) {
              head.appendChild(el("th", cls, label));
            }
            table.appendChild(el("thead")).appendChild(head);
            const tbody = table.appendChild(el("tbody"));
            const keys = p.model_keys || {};
            for (const id of Object.keys(keys).sort(byName)) {
              const k = keys[id] || {};
              const row = el("tr");
              row.dataset.key = id;
              cell(row, id, "mono key");
              const traffic = cell(row, "", "traffic");
              const wrap = el("div", "traffic-cell");
              wrap.append(bar(k.traffic_percentage), el("span", "value", percent(k.traffic_percentage, 1)));
              traffic.appendChild(wrap);
              cell(row, num(k.requests).toLocaleString("en-US"), "num requests");
              cell(row, ms(k.avg_latency_ms), "num latency");
              cell(row, percent(num(k.error_rate) * 100, 2), "num error-rate");
              cell(row, weight(k.current_weight), "num weight");
              cell(row, "", "health").appendChild(pill(k.health_status, HEALTH_CLASS));
              cell(row, "", "breaker").appendChild(pill(k.breaker_state, BREAKER_CLASS));
              tbody.appendChild(row);
            }
            const scroll = el("div", "scroll");
            scroll.appendChild(table);
            blocks.push(title, scroll);
          }
          container.replaceChildren(...blocks);
        }

        function renderAlerts(alerts) {
          const container = $("alerts");
          $("alerts-count").textContent = alerts.length ? String(alerts.length) : "";
          if (alerts.length === 0) return empty(container, "No active alerts");
          const table = el("table");
          const head = el("tr");
          for (const [label, cls] of [["Rule", ""], ["Value", "num"], ["Since", ""]]) {
            head.appendChild(el("th", cls, label));
          }
          table.appendChild(el("thead")).appendChild(head);
          const tbody = table.appendChild(el("tbody"));
          for (const a of alerts) {
            const row = el("tr");
            row.dataset.alert = a.rule + "/" + a.scope;
            if (a.detail) row.title = a.detail;
            // Three columns fit the narrow panel: scope and action go under the rule's name.
            const rule = cell(row, "", "rule");
            rule.appendChild(el("span", "pill bad", a.rule));
            const what = rule.appendChild(el("div", "muted alert-detail"));
            const action = String(a.action ?? "").replaceAll("_", " ");
            what.append(el("span", "mono scope", a.scope), " · ", el("span", "action", action));
            cell(row, String(Number(num(a.value).toFixed(4))), "num value");
            cell(row, String(a.since || "").slice(11, 19), "since mono");
            tbody.appendChild(row);
          }
          const scroll = el("div", "scroll");
          scroll.appendChild(table);
          container.replaceChildren(scroll);
        }

        function renderEvents(body) {
          const events = Array.isArray(body.events) ? body.events : [];
          const tbody = $("events").tBodies[0];
          if (events.length === 0) {
            const row = el("tr");
            cell(row, "No events yet", "muted").colSpan = 4;
            return tbody.replaceChildren(row);
          }
          tbody.replaceChildren(...events.map((e) => {
            const row = el("tr");
            row.dataset.kind = e.kind;
            const time = cell(row, String(e.time || "").slice(11, 23), "mono time");
            time.title = e.time + " (HLC " + e.hlc + ")";
            cell(row, "", "kind").appendChild(pill(e.kind, KIND_CLASS)).classList.add("plain");
            cell(row, e.origin, "origin");
            cell(row, e.summary, "summary");
            return row;
          }));
        }

        async function getJSON(path) {
          const response = await fetch(BASE + path, { cache: "no-store", headers: { accept: "application/json" } });
          if (!response.ok) throw new Error(path + " answered HTTP " + response.status);
          return response.json();
        }

        async function poll() {
          const sources = [
            ["cluster/nodes", renderNodes],
            ["cluster/metrics", renderMetrics],
            ["cluster/events?limit=" + EVENTS_LIMIT, renderEvents],
          ];
          const results = await Promise.allSettled(sources.map(([path]) => getJSON(path)));
          const problems = [];
          results.forEach((result, i) => {
            const [path, render] = sources[i];
            if (result.status === "rejected") return problems.push(path + ": " + result.reason.message);
            try { render(result.value); } catch (error) { problems.push(path + ": " + error.message); }
          });
          const error = $("error");
          error.hidden = problems.length === 0;
          error.textContent = problems.join("; ");
          if (problems.length < sources.length) {
            $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB") + " · every 2 s";
          }
          setTimeout(poll, POLL_MS);
        }

        poll();
        </script>
        </body>
        </html>
        """#
}
