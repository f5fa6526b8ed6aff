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


def previous_section(path, heading):
    """The lines of the section of an earlier report whose heading starts with `heading`, so a
    run that did not measure it (e.g. `make soak` alone) keeps what the last run wrote."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        text = f.read().splitlines()
    for i, line in enumerate(text):
        if line.startswith(heading):
            end = next((j for j in range(i + 1, len(text)) if text[j].startswith("## ")), len(text))
            section = text[i:end]
            while section and not section[-1].strip():
                section.pop()
            return section + [""]
    return []


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
    else:
        lines += previous_section(out, "## Event log")
    c = load(folder, "compaction.json")
    if c:
        mib = lambda b: b / (1 << 20)
        lines += [
            "## Retention (`bifrost-bench compaction`)",
            "",
            f"{c['events']:,} synthetic counter and usage events from 3 origins, compacted the way `retention` does:"
            f" bounded steps of about {c['events_per_step']:,} events, each one write transaction.",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| events after compaction | {c['events_left']:,} ({c['events'] / max(1, c['events_left']):,.0f}× fewer) |",
            f"| steps | {c['steps']:,} |",
            f"| writer held per step p50 / p99 / max | {c['step_p50_ms']:.2f} / {c['step_p99_ms']:.2f} / {c['step_max_ms']:.2f} ms |",
            f"| data.mdb before / after compaction / after as many new events | {mib(c['bytes_before']):.0f} / {mib(c['bytes_after']):.0f} / {mib(c['bytes_after_refill']):.0f} MiB |",
            "",
            "The file does not shrink (LMDB never returns pages to the file system) but reuses the pages compaction freed,"
            " so at steady traffic it stops growing.",
            "",
        ]
    else:
        lines += previous_section(out, "## Retention")
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
    else:
        lines += previous_section(out, "## Replication")
    g = load(folder, "gateway.json")
    if g:
        runs = g["runs"]
        conns = g["connections"]
        lines += [
            "## Gateway (`bifrost-bench gateway`)",
            "",
            f"wrk against `POST /v1/chat/completions`, {g['seconds_per_run']} s per run, in {g.get('rounds', 1)} interleaved"
            " rounds: every row's server runs throughout, and each round runs every row once, back to back, at each"
            " level. A figure is the median over the rounds; a ratio or an added latency is the median of the same-round"
            " comparisons, so the machine's drift between rounds cancels out of it. The upstream of every row is"
            " nginx answering each request with the same chat completion (usage included). Rows: that upstream direct;"
            " a plain nginx reverse proxy (one worker, keep-alive upstream); `bifrost-bench passthrough`, a bare SwiftNIO"
            " proxy with no Swift concurrency (body in one buffer, bearer check, byte scan for \"model\", keep-alive"
            " upstream pool on the connection's own loop); one node; one node of a 3-node cluster (virtual key with a"
            " limit that never bites, two weighted provider keys, every request writes its `ratelimit.increment` and"
            " `usage.recorded`). wrk, the proxies or nodes and the upstream share the machine's cores. CPU per request is"
            " the user + system time of the row's processes (all three nodes for the cluster row) over the requests"
            " served: the least noisy figure on a shared machine.",
            "",
            "| path | connections | req/s | p50 | p99 | added p50 / p99 | CPU per request | overhead p50 / p99 | vs pass-through: req/s, CPU | RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label, name in [("direct", "upstream direct"), ("nginx", "nginx proxy"), ("passthrough", "bare NIO pass-through"), ("one_node", "one node"), ("cluster_node", "3-node cluster node")]:
            for c in [1, conns]:
                r = runs.get(f"{label}_c{c}")
                if not r:
                    continue
                added = "—" if "added_p50_ms" not in r else f"{r['added_p50_ms']:.3f} / {r['added_p99_ms']:.3f} ms"
                cpu = "—" if "cpu_us_per_request" not in r else f"{r['cpu_us_per_request']:.1f} µs"
                overhead = "—" if "overhead_p50_us" not in r else f"{r['overhead_p50_us']:.1f} / {r['overhead_p99_us']:.1f} µs"
                ratios = []
                if "throughput_ratio_to_passthrough" in r:
                    ratios.append(f"{r['throughput_ratio_to_passthrough']:.2f}×")
                if "cpu_ratio_to_passthrough" in r:
                    ratios.append(f"{r['cpu_ratio_to_passthrough']:.2f}×")
                ratio = "—" if not ratios else ", ".join(ratios)
                rss = "—" if "rss_mib" not in r else f"{r['rss_mib']:.0f} MiB"
                lines.append(f"| {name} | {c} | {r['requests_per_second']:,.0f} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {added} | {cpu} | {overhead} | {ratio} | {rss} |")
        one = runs.get(f"one_node_c{conns}", {})
        cl = runs.get(f"cluster_node_c{conns}", {})
        one1 = runs.get("one_node_c1", {})
        cl1 = runs.get("cluster_node_c1", {})
        floor = runs.get(f"passthrough_c{conns}", {})
        lines += [
            "",
            "| target | measured | |",
            "| --- | --- | --- |",
            f"| one node: CPU per request ≤ 2.0× the pass-through's ({conns} connections) | {one.get('cpu_ratio_to_passthrough', 99):.2f}× ({one.get('cpu_us_per_request', 0):.1f} vs {floor.get('cpu_us_per_request', 0):.1f} µs) | {verdict(one.get('cpu_ratio_to_passthrough', 99) <= 2.0)} |",
            f"| cluster node: CPU of all 3 nodes per request ≤ 3.0× the pass-through's | {cl.get('cpu_ratio_to_passthrough', 99):.2f}× ({cl.get('cpu_us_per_request', 0):.1f} µs) | {verdict(cl.get('cpu_ratio_to_passthrough', 99) <= 3.0)} |",
            f"| one node: added p50 ≤ 0.12 ms at 1 connection | {one1.get('added_p50_ms', 99):.3f} ms | {verdict(one1.get('added_p50_ms', 99) <= 0.12)} |",
            f"| cluster node: added p50 ≤ 0.15 ms at 1 connection | {cl1.get('added_p50_ms', 99):.3f} ms | {verdict(cl1.get('added_p50_ms', 99) <= 0.15)} |",
            f"| one node: req/s at {conns} connections ≥ 0.7× the pass-through's | {one.get('throughput_ratio_to_passthrough', 0):.2f}× | {verdict(one.get('throughput_ratio_to_passthrough', 0) >= 0.7)} |",
            f"| cluster node: req/s at {conns} connections ≥ 0.5× the pass-through's | {cl.get('throughput_ratio_to_passthrough', 0):.2f}× | {verdict(cl.get('throughput_ratio_to_passthrough', 0) >= 0.5)} |",
            "",
            "Overhead is the node's own `bifrost_gateway_overhead_seconds` histogram (request in to response out,"
            " minus upstream calls and backoff), interpolated within buckets between two scrapes. At"
            f" {conns} connections the cores are saturated, so it includes the time a ready request waits for a core.",
            "",
        ]
    else:
        lines += previous_section(out, "## Gateway")
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
    else:
        lines += previous_section(out, "## Fault suite")
    lines += soak_section(load(folder, "soak.json"), out)
    # Interleaved A/B runs of two builds (tools/scripts/ab-node.sh), written by hand with their date.
    lines += previous_section(out, "## A/B of changes")
    with open(out, "w") as f:
        f.write("\n".join(lines))


def soak_section(s, out):
    if not s:
        return previous_section(out, "## Soak")
    mib = lambda b: b / 2**20  # noqa: E731
    lines = [
        "## Soak (`make soak`)",
        "",
        f"{s['nodes']} release nodes, {s['rate']} req/s of chat completions spread over them (mock provider upstream),"
        f" `retention.horizon` {s['horizon_seconds']:.0f} s, for {s['seconds'] / 60:.1f} minutes:"
        f" {s['requests_served']:,} requests served, {s['requests_failed']} failed. Root digests identical on every node"
        f" after the load stopped: {'yes' if s['root_digests_identical'] else '**no**'}.",
        "",
        "![data.mdb, live log pages and RSS of every node over the soak](images/soak.png)",
        "",
        "| node | data.mdb at 1 / 2 horizons / end | growth after 2 horizons (target < 5 %) | RSS at 2 horizons / end | growth | descriptors at end | events folded by compaction |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in s["per_node"]:
        at = {h["horizons"]: h for h in n["at_each_horizon"]}
        one, two = at.get(1), at.get(2)
        disk = n.get("data_mdb_growth_after_two_horizons")
        rss = n.get("rss_growth_after_two_horizons")
        lines.append(
            f"| {n['node']} | {mib(one['data_mdb_bytes']) if one else 0:.1f} / {mib(two['data_mdb_bytes']) if two else 0:.1f}"
            f" / {mib(n['data_mdb_bytes_end']):.1f} MiB | {disk * 100:+.1f} % ({verdict(disk is not None and disk < 0.05)})"
            f" | {mib(two['rss_bytes']) if two else 0:.0f} / {mib(n['rss_bytes_end']):.0f} MiB | {rss * 100:+.1f} % ({verdict(rss is not None and rss < 0.05)})"
            f" | {n['descriptors_end']} | {n['compacted_events']:,} |"
            if disk is not None and rss is not None else f"| {n['node']} | run shorter than two horizons | | | | | |")
    lines += [
        "",
        f"Each node keeps about {s['live_bytes_per_request_in_horizon']:,.0f} bytes of live log per request of the last horizon"
        " (every node holds every node's events); older requests survive only as per-window aggregates. Size a"
        " node's volume as requests per horizon × that figure, plus headroom (`docs/OPERATIONS.md`).",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
