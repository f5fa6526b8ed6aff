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
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
