#!/usr/bin/env python3
"""Draws bench/out/soak.json (from `bifrost-bench soak`): data.mdb, live log bytes and RSS of
every node over the run, with the horizons marked. Usage: soak_chart.py SOAK_JSON PNG"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        soak = json.load(f)
    nodes = sorted({s["node"] for s in soak["samples"]})
    fig, (disk, memory) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for n in nodes:
        mine = [s for s in soak["samples"] if s["node"] == n]
        minutes = [s["t"] / 60 for s in mine]
        line, = disk.plot(minutes, [s["data_mdb_bytes"] / 2**20 for s in mine], label=f"node {n + 1} data.mdb")
        disk.plot(minutes, [s["live_bytes"] / 2**20 for s in mine], linestyle="--", color=line.get_color(),
                  label=f"node {n + 1} live pages")
        memory.plot(minutes, [s["rss_bytes"] / 2**20 for s in mine], color=line.get_color(), label=f"node {n + 1}")
    horizon = soak["horizon_seconds"] / 60
    k = 1
    while k * horizon <= soak["seconds"] / 60:
        for axis in (disk, memory):
            axis.axvline(k * horizon, color="grey", linewidth=0.6, alpha=0.5)
        k += 1
    disk.set_ylabel("MiB on disk")
    disk.set_title(f"{len(nodes)} nodes, {soak['rate']} req/s, horizon {soak['horizon_seconds']:.0f} s "
                   f"(grey lines), {soak['requests_served']:,} requests")
    disk.legend(fontsize=7, ncol=2)
    disk.set_ylim(bottom=0)
    memory.set_ylabel("RSS, MiB")
    memory.set_xlabel("minutes")
    memory.legend(fontsize=7)
    memory.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
