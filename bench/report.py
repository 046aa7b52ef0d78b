"""Writes bench/run.sh's results: latest.json and latest.md in the results directory (the
Markdown is also printed), with the issue's two replication targets checked as ratios.

Usage: report.py RUNS.jsonl LOOPBACK_MB_PER_SEC DISK_MB_PER_SEC RESULTS_DIR
"""
import datetime
import json
import os
import platform
import sys

SINGLE_ACKS1 = "produce acks=1"
RF3_ACKS_ALL = "3 brokers: produce RF 3 acks=all"
RF3_E2E = "3 brokers: end-to-end at 20 MB/s, RF 3 acks=all"
E2E_P99_TARGET_MS = 10.0


def targets(runs):
    """The two targets of issue 14, where the runs they need are present and succeeded."""
    by_name = {r["name"]: r for r in runs}
    out = {}
    single, rf3 = by_name.get(SINGLE_ACKS1, {}), by_name.get(RF3_ACKS_ALL, {})
    if single.get("mb_per_sec") and rf3.get("mb_per_sec"):
        ratio = rf3["mb_per_sec"] / single["mb_per_sec"]
        out["rf3_acks_all_vs_single_acks1"] = {
            "rf3_acks_all_mb_per_sec": rf3["mb_per_sec"],
            "single_acks1_mb_per_sec": single["mb_per_sec"],
            "ratio": ratio,
            "target": ">= 1/3",
            "met": ratio >= 1 / 3,
        }
    e2e = by_name.get(RF3_E2E, {})
    if "p99_ms" in e2e:
        out["rf3_e2e_p99_ms_at_20_mb"] = {
            "p99_ms": e2e["p99_ms"],
            "ratio_to_target": e2e["p99_ms"] / E2E_P99_TARGET_MS,
            "target": f"< {E2E_P99_TARGET_MS:g} ms",
            "met": e2e["p99_ms"] < E2E_P99_TARGET_MS,
        }
    return out


def per_broker_table(cluster):
    lines = [
        "",
        "Three-broker rows: broker CPU and RSS above are the sums of the three; per broker:",
        "",
        "| run | CPU s (node 1 / 2 / 3) | CPU cores (1 / 2 / 3) | RSS MB (1 / 2 / 3) |",
        "|---|---:|---:|---:|",
    ]
    for r in cluster:
        b = r["brokers"]
        lines.append("| " + " | ".join([
            r["name"],
            " / ".join(f'{x["cpu_seconds"]:.1f}' for x in b),
            " / ".join(f'{x["cpu_cores"]:.2f}' for x in b),
            " / ".join(f'{x["rss_mb"]:.0f}' for x in b),
        ]) + " |")
    return lines


def fmt(value, spec):
    return "" if value is None else format(value, spec)


def main():
    runs_path, loopback, disk, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    runs = [json.loads(line) for line in open(runs_path)]
    checks = targets(runs)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                    "loopback_tcp_mb_per_sec": loopback, "disk_write_mb_per_sec": disk},
        "runs": runs,
        "targets": checks,
    }
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    lines = [
        f"Machine: {os.cpu_count()} cores, loopback TCP {loopback:.0f} MB/s (1 stream), disk write {disk:.0f} MB/s",
        "",
        "| run | records/s | MB/s | % of loopback | p50 ms | p99 ms | p999 ms | broker CPU (cores) | broker RSS MB | loadgen CPU (cores) | CPU / IO stall % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        mbs = r.get("mb_per_sec")
        name = r["name"] + (f' (FAILED: {r["error"]})' if "error" in r else "")
        if r.get("failed"):
            name += f' ({r["failed"]:,} records not acknowledged)'
        cells = [
            name,
            fmt(r.get("records_per_sec"), ",.0f"),
            fmt(mbs, ".0f"),
            f"{100 * mbs / loopback:.0f}%" if mbs else "",
            fmt(r.get("p50_ms"), ".2f"),
            fmt(r.get("p99_ms"), ".2f"),
            fmt(r.get("p999_ms"), ".2f"),
            fmt(r.get("broker_cpu_cores"), ".2f"),
            fmt(r.get("broker_rss_mb"), ".0f"),
            fmt(r.get("loadgen_cpu_cores"), ".2f"),
            f'{r["cpu_pressure_pct"]:.0f} / {r["io_pressure_pct"]:.0f}' if "cpu_pressure_pct" in r else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    cluster = [r for r in runs if "brokers" in r]
    if cluster:
        lines += per_broker_table(cluster)
    lines += ["", "CPU / IO stall %: share of the run's time some task waited for a CPU / for I/O "
              "(Linux PSI), the machine's contention including other work on it."]
    fresh = sorted({r["fresh_state"] for r in runs if r.get("fresh_state")})
    if fresh:
        lines += ["", "Every produce row ran on fresh broker(s) with empty data directories, "
                  + "; ".join(fresh) + "."]
    if checks:
        lines += ["", "Targets (issue 14):", ""]
    t = checks.get("rf3_acks_all_vs_single_acks1")
    if t:
        lines.append(
            f'- RF 3 acks=all / single-broker acks=1 throughput: {t["rf3_acks_all_mb_per_sec"]:.0f} / '
            f'{t["single_acks1_mb_per_sec"]:.0f} MB/s = {t["ratio"]:.2f} (target >= 0.33: '
            f'{"met" if t["met"] else "MISSED"})')
    t = checks.get("rf3_e2e_p99_ms_at_20_mb")
    if t:
        lines.append(
            f'- RF 3 acks=all end-to-end p99 at 20 MB/s: {t["p99_ms"]:.2f} ms = {t["ratio_to_target"]:.2f} '
            f'of the 10 ms target ({"met" if t["met"] else "MISSED"})')
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
