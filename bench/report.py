"""The results: a table with every target marked met / NOT met, JSON files and a PNG."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench import journey_scenarios

# Keys holding long per-sample lists: left out of summaries (latencies also of the JSON).
SERIES_KEYS = {
    "latencies_ms",
    "deliveries_per_second_series",
    "accepted_per_second_series",
    "rss_series_mib",
}


def machine() -> dict[str, Any]:
    """Cores, Python, date and git commit: what the figures were measured on."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    return {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_src": bool(git("status", "--porcelain", "src")),
    }


def summary(value: dict[str, Any]) -> str:
    """One line for the progress log."""
    if "error" in value:
        return f"error: {value['error']}"
    parts = []
    for key in ("deliveries_per_s_steady", "events_per_s_steady", "peak_rss_mib"):
        if key in value:
            parts.append(f"{key}={value[key]:,.0f}")
    if "ingest" in value:
        parts.append(f"accepted/s={value['ingest']['events_per_s_steady']:,.0f}")
    if "latency_ms" in value:
        lat = value["latency_ms"]
        parts.append(f"p50={lat['p50']:.1f}ms p99={lat['p99']:.1f}ms")
    if "throughput" in value:
        parts.append(summary(value["throughput"]) + " | " + summary(value["reaction"]))
    if "complete" in value and not value["complete"]:
        parts.append(f"INCOMPLETE {value['deliveries_received']}/{value['deliveries_expected']}")
    parts.append(f"({value.get('wall_s', 0)} s)")
    return " ".join(parts)


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, figure, note) rows of the figures table."""
    out: list[tuple[str, str, str]] = []
    limit = _get(results, "limit", "deliveries_per_s_steady")
    out.append(
        (
            "1. limit: aiohttp -> receiver",
            f"{_num(limit)} req/s",
            f"concurrency {results.get('concurrency')}",
        )
    )
    celery = _get(results, "celery", "deliveries_per_s_steady")
    out.append(("2. FastAPI + Celery (prefork 2) + requests", f"{_num(celery)} deliveries/s", ""))
    for mode in ("full", "normal"):
        sync = f"synchronous={mode.upper()}"
        for kind, label in (("batch", "batches of 100"), ("single", "1 event/request")):
            run = results.get(f"e2e_{kind}_{mode}")
            if run and "error" not in run:
                lost = run["deliveries_expected"] - run["deliveries_received"]
                out.append(
                    (
                        f"3. hookline e2e, {label}, {sync}",
                        f"{_num(run['deliveries_per_s_steady'])} deliveries/s",
                        f"accepted {_num(run['ingest']['events_per_s_steady'])} ev/s; "
                        f"total {_num(run['deliveries_per_s_total'])}/s; lost {lost}; "
                        f"dup {run['duplicates']}",
                    )
                )
        run = results.get(f"reaction_{mode}")
        if run and "error" not in run:
            lat = run["latency_ms"]
            out.append(
                (
                    f"4. reaction at {_num(run['offered_events_per_s'])} ev/s, {sync}",
                    f"p50 {lat['p50']:.1f} / p95 {lat['p95']:.1f} / p99 {lat['p99']:.1f} / "
                    f"max {lat['max']:.1f} ms",
                    f"{run['samples']:,} events after {run['warmup_s']} s warm-up; "
                    f"{run['arrived_before_202']:,} arrived before their 202; from send: "
                    f"p50 {run['latency_from_send_ms']['p50']:.1f} / "
                    f"p99 {run['latency_from_send_ms']['p99']:.1f} ms",
                )
            )
        for kind, label in (("batch", "batches of 100"), ("single", "1 event/request")):
            run = results.get(f"ingest_{kind}_{mode}")
            if run and "error" not in run:
                out.append(
                    (
                        f"5. ingest only, {label}, {sync}",
                        f"{_num(run['events_per_s_steady'])} events/s",
                        f"total {_num(run['events_per_s_total'])}/s; statuses {run['statuses']}",
                    )
                )
    base = _get(results, "scale_baseline", "throughput", "deliveries_per_s_steady")
    for key, run in results.items():
        if key.startswith("scale_") and "error" not in run:
            thr = run["throughput"]["deliveries_per_s_steady"]
            lat = run["reaction"]["latency_ms"]
            cost = 100 * (1 - thr / base) if base else None
            out.append(
                (
                    f"6. cost: {key[6:]} (FULL)",
                    f"{_num(thr)} deliveries/s",
                    f"cost {_num(cost, 1)}% vs baseline; p50 {lat['p50']:.1f} / "
                    f"p99 {lat['p99']:.1f} ms at {_num(results.get('scaling_rate'))} ev/s",
                )
            )
    mem = results.get("memory")
    if mem and "error" not in mem:
        out.append(
            (
                f"7. memory over {mem['events']:,} events "
                f"({'with' if mem['matching_rule'] else 'no'} matching rule)",
                f"peak RSS {mem['peak_rss_mib']:.0f} MiB",
                f"RSS {mem['rss_at_10pct_mib']:.0f} MiB at 10% -> {mem['rss_end_mib']:.0f} MiB "
                f"at end ({mem['growth_after_warmup_pct']:+.1f}%)",
            )
        )
    return out + journey_scenarios.rows(results)


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of the issue; met is None if not measured."""
    out: list[tuple[str, str, bool | None]] = []
    limit = _get(results, "limit", "deliveries_per_s_steady")
    celery = _get(results, "celery", "deliveries_per_s_steady")
    for mode in ("full", "normal"):
        sync = f"[{mode.upper()}]"
        e2e = _get(results, f"e2e_batch_{mode}", "deliveries_per_s_steady")
        if e2e is None:
            continue
        ratio = e2e / limit if limit else None
        out.append(
            (
                f"{sync} hookline deliveries/s >= 60% of the limit",
                f"{_num(ratio and 100 * ratio, 1)}%",
                None if ratio is None else ratio >= 0.6,
            )
        )
        times = e2e / celery if celery else None
        out.append(
            (
                f"{sync} hookline deliveries/s >= 8x Celery",
                f"{_num(times, 2)}x",
                None if times is None else times >= 8,
            )
        )
        lat = _get(results, f"reaction_{mode}", "latency_ms")
        out.append(
            (
                f"{sync} reaction p50 < 5 ms at half load",
                f"{_num(lat and lat['p50'], 1)} ms",
                None if lat is None else lat["p50"] < 5,
            )
        )
        out.append(
            (
                f"{sync} reaction p99 < 25 ms at half load",
                f"{_num(lat and lat['p99'], 1)} ms",
                None if lat is None else lat["p99"] < 25,
            )
        )
        ingest = _get(results, f"ingest_batch_{mode}", "events_per_s_steady")
        out.append(
            (
                f"{sync} ingest >= 40,000 events/s in batches of 100",
                f"{_num(ingest)} ev/s",
                None if ingest is None else ingest >= 40_000,
            )
        )
    base = _get(results, "scale_baseline", "throughput", "deliveries_per_s_steady")
    counts = results.get("counts", {})
    rules = max(counts.get("extra_rules") or [0])
    for key, label in (
        (f"rules_{rules}", f"{rules:,} extra rules cost <= 10% vs 1 rule"),
        (
            f"users_{counts.get('many_users')}",
            f"{counts.get('many_users', 0):,} users cost <= 10% vs {results.get('users', 0):,}",
        ),
    ):
        thr = _get(results, f"scale_{key}", "throughput", "deliveries_per_s_steady")
        cost = 100 * (1 - thr / base) if thr is not None and base else None
        out.append((f"[FULL] {label}", f"{_num(cost, 1)}%", None if cost is None else cost <= 10))
    mem = results.get("memory")
    if mem and "error" not in mem:
        events = mem["events"]
        out.append(
            (
                f"[FULL] peak RSS < 300 MB over {events:,} events"
                + ("" if events >= 1_000_000 else " (target is over 1,000,000)"),
                f"{mem['peak_rss_mib'] * 1.048576:.0f} MB",
                mem["peak_rss_mib"] * 1.048576 < 300,
            )
        )
        out.append(
            (
                "[FULL] RSS growth after warm-up <= 10%",
                f"{mem['growth_after_warmup_pct']:+.1f}%",
                mem["growth_after_warmup_pct"] <= 10,
            )
        )
    return out + journey_scenarios.targets(results)


def table(results: dict[str, Any]) -> str:
    """The printed report."""
    m = results["machine"]
    lines = [
        "",
        f"hookline benchmark{' (QUICK: small counts, a smoke test)' if results['quick'] else ''}"
        f" - {m['date']} - {m['cores']} cores - Python {m['python']} - "
        f"commit {m['git_commit'][:10]}"
        f"{' + uncommitted src changes' if m['git_dirty_src'] else ''}",
        f"command: {results['command']}   ({results.get('seconds', 0)} s)",
        "synchronous=FULL: every commit fsynced (power-loss safe, the default); "
        "NORMAL: relaxed (survives a process crash, not a power cut)",
        f"hookline and the limit both keep up to {results.get('concurrency')} requests in "
        "flight to the receiver (HOOKLINE_MAX_PER_HOST set to match; its default is 32)",
        "",
    ]
    figures = rows(results)
    w1 = max((len(r[0]) for r in figures), default=10)
    w2 = max((len(r[1]) for r in figures), default=10)
    lines += [f"{a:<{w1}}  {b:>{w2}}  {c}" for a, b, c in figures]
    lines += ["", "Targets:"]
    checks = targets(results)
    w = max((len(t[0]) for t in checks), default=10)
    for target, measured, met in checks:
        mark = "not measured" if met is None else "met" if met else "NOT met"
        lines.append(f"  {target:<{w}}  {measured:>12}  {mark}")
    if results.get("failures"):
        lines += ["", "Problems seen:"] + [f"  - {f}" for f in results["failures"]]
    return "\n".join(lines)


def finish(results: dict[str, Any], directory: Path) -> None:
    """Print the table, write the JSON (timestamped and latest) and the PNG."""
    results["targets"] = [
        {"target": t, "measured": v, "met": met} for t, v, met in targets(results)
    ]
    print(table(results), flush=True)
    try:
        plot(results, directory / "latest.png")
    except Exception as exc:  # the chart must never cost the figures
        print(f"(no chart: {type(exc).__name__}: {exc})")
    # Each latency sample is in the chart; the JSON keeps the percentiles (it is committed).
    data = orjson.dumps(_without(results, "latencies_ms"), option=orjson.OPT_INDENT_2)
    stamp = results["machine"]["date"].replace(":", "").replace("+0000", "Z")
    (directory / f"{stamp}{'-quick' if results['quick'] else ''}.json").write_bytes(data)
    (directory / "latest.json").write_bytes(data)
    print(f"\nJSON: {directory / 'latest.json'}   chart: {directory / 'latest.png'}")


def _without(value: Any, key: str) -> Any:
    """``value`` with every dict entry named ``key`` left out, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput per second of the hookline e2e runs, and the reaction-time distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for mode in ("full", "normal"):
        run = results.get(f"e2e_batch_{mode}")
        if run and "error" not in run:
            series = run["deliveries_per_second_series"]
            left.plot(
                range(len(series)), series, marker=".", label=f"deliveries/s ({mode.upper()})"
            )
            accepted = run["accepted_per_second_series"]
            left.plot(
                range(len(accepted)),
                accepted,
                linestyle="--",
                marker=".",
                label=f"accepted/s ({mode.upper()})",
            )
    limit = _get(results, "limit", "deliveries_per_s_steady")
    if limit:
        left.axhline(limit * 0.6, color="grey", linestyle=":", label="60% of the limit")
    left.set_title("hookline end to end, batches of 100")
    left.set_xlabel("seconds since the load started")
    left.set_ylabel("per second")
    left.legend()
    for mode in ("full", "normal"):
        run = results.get(f"reaction_{mode}")
        if run and "error" not in run and run["latencies_ms"]:
            values = sorted(run["latencies_ms"])
            share = [100 * (i + 1) / len(values) for i in range(len(values))]
            right.plot(
                values, share, label=f"{mode.upper()} at {run['offered_events_per_s']:,.0f} ev/s"
            )
    right.axvline(5, color="green", linestyle=":", label="p50 target 5 ms")
    right.axvline(25, color="red", linestyle=":", label="p99 target 25 ms")
    right.set_xscale("symlog", linthresh=1)
    right.set_title("reaction time: 202 -> webhook arrival (CDF)")
    right.set_xlabel("ms")
    right.set_ylabel("% of events")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
