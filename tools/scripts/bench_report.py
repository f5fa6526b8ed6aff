#!/usr/bin/env python3
"""Turns the JSON results in a bench output folder into docs/BENCHMARKS.md."""
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, {swift[0] if swift else 'swift ?'}"


def verdict(ok):
    return "met" if ok else "**not met**"


def main():
    folder, out = sys.argv[1], sys.argv[2]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (release build; every ratio is measured side by side in the same run).",
        f"Last run: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on {machine()}.",
        "",
    ]
    e = load(folder, "eventlog.json")
    if e:
        lines += [
            "## Event log (`bifrost-bench eventlog`)",
            "",
            f"{e['events']:,} synthetic events of every kind, batches of {e['batch']}, {e['writers']} concurrent writers,"
            f" {e['origins']} origins (one third inserted as peers' events).",
            "",
            "| measure | value | target |",
            "| --- | --- | --- |",
            f"| batched append throughput | {e['events_per_s']:,.0f} events/s | ≥ 500,000 ({verdict(e['events_per_s'] >= 500_000)}) |",
            f"| raw LMDB, same loop, same run | {e['raw_lmdb_events_per_s']:,.0f} events/s | — |",
            f"| ratio store / raw LMDB | {e['ratio_to_raw_lmdb']:.3f} | — |",
            f"| group commits | {e['commits']:,} | — |",
            f"| CPU per appended event (all threads) | {e['append_cpu_us_per_event']:.3f} µs | — |",
            f"| of which digest maintenance (SHA-256 + index) | {e['digest_cpu_us_per_event']:.3f} µs ({e['digest_overhead_pct']:.1f} % of append CPU) | — |",
            f"| synced single-event commit p50 | {e['synced_commit_p50_ms']:.3f} ms | — |",
            f"| synced single-event commit p99 | {e['synced_commit_p99_ms']:.3f} ms | — |",
            f"| replay of {e['replay_events']:,} events into views | {e['replay_seconds']:.3f} s ({e['replay_events_per_s']:,.0f} events/s) | ≤ 1 s per 1M ({verdict(e['replay_seconds'] * 1_000_000 / max(1, e['replay_events']) <= 1.0)}) |",
            "",
            "The raw LMDB loop writes the same number of pre-encoded events of the same sizes with `MDB_APPEND`,"
            " one transaction per batch, with the store's environment flags; it maintains no digest index, no"
            " insertion log, no watermarks and no views, and does not hash, so the ratio is the price of those.",
            "",
        ]
    r = load(folder, "replication.json")
    if r:
        def ms(v):
            return "—" if v is None else f"{v:.1f} ms"
        lines += [
            "## Replication (`bifrost-bench replication`)",
            "",
            f"{r['nodes']} real `bifrost serve` processes on loopback, sealed UDP gossip and TCP sync.",
            "",
            "| measure | value | target |",
            "| --- | --- | --- |",
            f"| propagation p50 at {r['propagation_rate_events_per_s']:,.0f} events/s | {ms(r['propagation_p50_ms'])} | — |",
            f"| propagation p99 at {r['propagation_rate_events_per_s']:,.0f} events/s | {ms(r['propagation_p99_ms'])} | ≤ 10 ms at 5k/s ({verdict((r['propagation_p99_ms'] or 1e9) <= 10)}) |",
            f"| catch-up of a node that missed {r['catch_up_events']:,} events | {r['catch_up_seconds'] if r['catch_up_seconds'] is not None else 'did not finish'} s | ≤ 5 s for 1M ({verdict((r['catch_up_seconds'] or 1e9) <= 5)}) |",
            f"| detection of a SIGKILLed node (seed defaults: 1 s interval, threshold 3) | {r['detection_seconds']} s | — |",
            f"| reconciliation, 0 differences | {r['reconcile_0_messages']} messages, {r['reconcile_0_bytes']:,} bytes | — |",
            f"| reconciliation, 1,000 recent differences | {r['reconcile_1000_recent_messages']} messages, {r['reconcile_1000_recent_bytes']:,} bytes | — |",
            f"| reconciliation, 1,000 scattered differences | {r['reconcile_1000_scattered_messages']} messages, {r['reconcile_1000_scattered_bytes']:,} bytes | — |",
            "",
            "Propagation is measured at the receivers: wall time at insert minus the event's HLC wall time"
            " (append, group commit, sealing, TCP, insert and commit on the receiver). Reconciliation runs between"
            " two real LMDB logs sharing 100,000 events spread over a day; a message is one direction of a round trip.",
            "",
        ]
    g = load(folder, "gateway.json")
    if g:
        runs = g["runs"]
        conns = g["connections"]
        lines += [
            "## Gateway (`bifrost-bench gateway`)",
            "",
            f"wrk against `POST /v1/chat/completions` for {g['seconds_per_run']} s per row: the mock provider direct,"
            " then through a plain nginx reverse proxy (when installed: one worker per core, keep-alive upstream),"
            " then through `bifrost-bench passthrough` (Hummingbird in, AsyncHTTPClient out, nothing else: the floor"
            " of the node's own stack), then through one node, then through one node of a 3-node cluster (virtual key with a limit that never"
            " bites, two weighted provider keys, every request writes its `ratelimit.increment` and `usage.recorded`)."
            " wrk, the proxy or node(s) and the mock share the machine's cores.",
            "",
            "| path | connections | req/s | p50 | p99 | added p50 | overhead p50 / p99 | throughput vs nginx / vs pass-through | RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label, name in [("direct", "mock direct"), ("nginx", "nginx proxy"), ("passthrough", "Hummingbird + AsyncHTTPClient pass-through"), ("one_node", "one node"), ("cluster_node", "3-node cluster node")]:
            for c in [1, conns]:
                r = runs.get(f"{label}_c{c}")
                if not r:
                    continue
                added = "—" if "added_p50_ms" not in r else f"{r['added_p50_ms']:.3f} ms"
                overhead = "—" if "overhead_p50_us" not in r else f"{r['overhead_p50_us']:.1f} / {r['overhead_p99_us']:.1f} µs"
                ratios = [f"{r[k]:.2f}×" if k in r else "—" for k in ("throughput_ratio_to_nginx", "throughput_ratio_to_passthrough")]
                ratio = "—" if ratios == ["—", "—"] else " / ".join(ratios)
                rss = "—" if "rss_mib" not in r else f"{r['rss_mib']:.0f} MiB"
                lines.append(f"| {name} | {c} | {r['requests_per_second']:,.0f} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {added} | {overhead} | {ratio} | {rss} |")
        cl = runs.get(f"cluster_node_c{conns}", {})
        cl1 = runs.get("cluster_node_c1", {})
        one = runs.get("one_node_c1", {})
        ngx = runs.get(f"nginx_c{conns}")
        ngx1 = runs.get("nginx_c1")
        floor = runs.get(f"passthrough_c{conns}")
        floor1 = runs.get("passthrough_c1")
        def ref(r, key, fmt):
            return "—" if not r else fmt.format(r.get(key, 0))
        lines += [
            "",
            "| target | measured | nginx in this run | pass-through in this run | |",
            "| --- | --- | --- | --- | --- |",
            f"| ≥ 15,000 req/s at {conns} connections on a cluster node | {cl.get('requests_per_second', 0):,.0f} | {ref(ngx, 'requests_per_second', '{:,.0f}')} | {ref(floor, 'requests_per_second', '{:,.0f}')} | {verdict(cl.get('requests_per_second', 0) >= 15_000)} |",
            f"| added p50 ≤ 0.15 ms at 1 connection (one node) | {one.get('added_p50_ms', 99):.3f} ms | {ref(ngx1, 'added_p50_ms', '{:.3f} ms')} | {ref(floor1, 'added_p50_ms', '{:.3f} ms')} | {verdict(one.get('added_p50_ms', 99) <= 0.15)} |",
            f"| in-process overhead p50 ≤ 50 µs (cluster node, 1 connection) | {cl1.get('overhead_p50_us', 1e9):.1f} µs | — | — | {verdict(cl1.get('overhead_p50_us', 1e9) <= 50)} |",
            f"| in-process overhead p50 ≤ 50 µs (cluster node, {conns} connections) | {cl.get('overhead_p50_us', 1e9):.1f} µs | — | — | {verdict(cl.get('overhead_p50_us', 1e9) <= 50)} |",
            "",
            "Overhead is the node's own `bifrost_gateway_overhead_seconds` histogram (request in to response out,"
            " minus upstream calls and backoff), interpolated within buckets between two scrapes. At"
            f" {conns} connections the cores are saturated by wrk, the node and the mock together, so it includes"
            " the time a ready request waits for a core.",
            "",
        ]
    faults = {name: load(folder, f"faults-{name}.json") for name in ["kill", "rolling", "weights", "partition"]}
    if any(faults.values()):
        lines += [
            "## Fault suite (`make faults`)",
            "",
            "Real `bifrost serve` processes (debug build) behind haproxy with health checks, the mock provider"
            " upstream; load from one client process; gossip at 200 ms with detection_threshold 2.",
            "",
            "| fault | figures |",
            "| --- | --- |",
        ]
        k = faults["kill"]
        if k:
            lines.append(f"| kill -9 one of 3 under ~500 req/s | {k['client_errors']} client errors of {k['ok'] + k['client_errors']:,} requests;"
                         f" dead declared after {k['detection_seconds']:.2f} s; served by {k['served_by']} |")
        r = faults["rolling"]
        if r:
            lines.append(f"| rolling restart of all 3 under load | {r['client_errors']} client errors of {r['ok'] + r['client_errors']:,} requests |")
        w = faults["weights"]
        if w:
            lines.append(f"| one key failing at the provider | {w['controller_changes']} weight changes, all by {', '.join(w['deciders'])};"
                         f" reduced on every node: {w['reduced_within_bound']}; restored: {w['restored']}; {w['client_errors']} client errors |")
        p = faults["partition"]
        if p:
            lines.append(f"| one node partitioned {p['partition_seconds']:.0f} s under load (`scale`) | {p['admitted']} admitted of a {p['limit']} RPM limit"
                         f" (overshoot {p['overshoot']}, {p['overshoot_pct']:.1f} %; bound {p['bound']}); digests identical {p['convergence_seconds_after_heal']:.2f} s after the heal |")
        lines.append("")
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
