"""The results: a table with every target marked met / NOT met, JSON files and a PNG."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from bench import journey_scenarios

# Per-event latency samples: drawn in the chart, left out of the JSON (it is committed).
LATENCY_KEYS = {"latencies_from_send_ms", "latencies_from_202_ms"}


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
    if "curve" in value:
        parts.append(" | ".join(f"{c}: {v:,.0f}/s" for c, v in value["curve"].items()))
        parts.append(
            f"best {value['deliveries_per_s_steady']:,.0f}/s at {value['best_concurrency']}"
        )
    else:
        for key in ("deliveries_per_s_steady", "events_per_s_steady", "peak_rss_mib"):
            if key in value:
                parts.append(f"{key}={value[key]:,.0f}")
    if "ingest" in value:
        parts.append(f"accepted/s={value['ingest']['events_per_s_steady']:,.0f}")
    if "latency_from_send_ms" in value:
        lat = value["latency_from_send_ms"]
        parts.append(f"from send: p50={lat['p50']:.1f}ms p99={lat['p99']:.1f}ms")
    if "throughput" in value:
        parts.append(summary(value["throughput"]))
        if value.get("reaction"):
            parts.append("| " + summary(value["reaction"]))
    if "complete" in value and not value["complete"]:
        if "deliveries_received" in value:
            parts.append(
                f"INCOMPLETE {value['deliveries_received']}/{value['deliveries_expected']}"
            )
        else:
            parts.append("INCOMPLETE")
    if "wall_s" in value:
        parts.append(f"({value['wall_s']} s)")
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


def _ok(run: Any) -> TypeGuard[dict[str, Any]]:
    """True for a measurement that ran (a dict without an error)."""
    return isinstance(run, dict) and "error" not in run


CLIENTS = ("aiohttp", "pyreqwest")
MODES = ("full", "normal")
MODE_COLOURS = {"full": "tab:blue", "normal": "tab:green"}


def defaults_line(results: dict[str, Any]) -> str:
    """What "default settings" means in this run, and what the bench changes."""
    d = results.get("hookline_defaults") or {}
    needed = results.get("hookline_env") or {}
    overrides = results.get("hookline_overrides") or {}
    line = (
        f"default settings = hookline serve with none given: {d.get('max_concurrency')} "
        f"requests in flight, {d.get('max_per_host')} per destination, "
        f"{d.get('sender_processes')} sender process(es), "
        f"synchronous={d.get('sqlite_synchronous')}, log level {d.get('log_level')}; "
        "the bench adds only "
        + ", ".join(f"{k}={v}" for k, v in needed.items())
        + " (the receiver is on loopback)"
    )
    if overrides:
        line += "\nevery hookline of this run also has " + ", ".join(
            f"{k}={v}" for k, v in overrides.items()
        )
        line += " (--hookline-env): none of its figures is at default settings"
    return line


def reference_rows(results: dict[str, Any]) -> list[str]:
    """The references' curves: req/s at each number in flight, and each one's best."""
    sweeps = {c: results[f"limit_{c}"] for c in CLIENTS if _ok(results.get(f"limit_{c}"))}
    if not sweeps:
        return []
    points = sorted({int(k) for s in sweeps.values() for k in s["curve"]})
    head = f"  {'in flight':<10}" + "".join(f"{p:>9}" for p in points) + "   limit (best)"
    lines = [
        "References: the client library straight to the receiver, requests/s "
        f"({next(iter(sweeps.values()))['seconds_per_point']:g} s per point)",
        head,
    ]
    for client, sweep in sweeps.items():
        curve = sweep["curve"]
        cells = "".join(f"{_num(curve.get(str(p))):>9}" for p in points)
        lines.append(
            f"  {client:<10}{cells}   {_num(sweep['deliveries_per_s_steady'])} req/s "
            f"at {sweep['best_concurrency']} in flight"
        )
    return lines


def _mode_rows(results: dict[str, Any], mode: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for kind, label in (("batch", "batches of 100"), ("single", "1 event/request")):
        run = results.get(f"e2e_{kind}_{mode}")
        if _ok(run):
            lost = run["deliveries_expected"] - run["deliveries_received"]
            out.append(
                (
                    f"hookline e2e, {label}, {run['load_seconds']:.0f} s of load",
                    f"{_num(run['deliveries_per_s_steady'])} deliveries/s",
                    f"accepted {_num(run['ingest']['events_per_s_steady'])} ev/s; "
                    f"total {_num(run['deliveries_per_s_total'])}/s; lost {lost}; "
                    f"dup {run['duplicates']}",
                )
            )
    run = results.get(f"reaction_{mode}")
    if _ok(run):
        lat = run["latency_from_send_ms"]
        from_202 = run["latency_from_202_ms"]
        out.append(
            (
                f"reaction at {_num(run['offered_events_per_s'])} ev/s, from send",
                f"p50 {lat['p50']:.1f} / p95 {lat['p95']:.1f} / p99 {lat['p99']:.1f} / "
                f"max {lat['max']:.1f} ms",
                f"{run['samples']:,} events after {run['warmup_s']} s warm-up; from the 202: "
                f"p50 {from_202['p50']:.1f} / p99 {from_202['p99']:.1f} ms "
                f"({run['arrived_before_202']:,} arrived before their 202)",
            )
        )
    for kind, label in (("batch", "batches of 100"), ("single", "1 event/request")):
        run = results.get(f"ingest_{kind}_{mode}")
        if _ok(run):
            out.append(
                (
                    f"ingest only, {label}",
                    f"{_num(run['events_per_s_steady'])} events/s",
                    f"total {_num(run['events_per_s_total'])}/s; statuses {run['statuses']}",
                )
            )
    return out


def _settings_of(results: dict[str, Any], *keys: str) -> str:
    for key in keys:
        run = results.get(key)
        if _ok(run) and run.get("settings"):
            return str(run["settings"])
    return "default settings"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str] | str]:
    """The figures table: (measurement, figure, note) rows under one-line section headings
    that name the settings hookline ran with."""
    out: list[tuple[str, str, str] | str] = []
    celery = results.get("celery")
    if _ok(celery):
        out.append("Baseline")
        out.append(
            (
                "FastAPI + Celery (prefork 2) + requests",
                f"{_num(celery['deliveries_per_s_steady'])} deliveries/s",
                "",
            )
        )
    for mode in MODES:
        keys = [f"{k}_{mode}" for k in ("e2e_batch", "e2e_single", "reaction", "ingest_batch")]
        mode_rows = _mode_rows(results, mode)
        if mode_rows:
            out.append(f"hookline, {_settings_of(results, *keys, f'ingest_single_{mode}')}")
            out += mode_rows
    base = _get(results, "scale_baseline", "throughput", "deliveries_per_s_steady")
    scale = [(k, v) for k, v in results.items() if k.startswith("scale_") and _ok(v)]
    if scale:
        out.append(f"Scaling, {_settings_of(results, 'scale_baseline')}")
    for key, run in scale:
        thr = run["throughput"]["deliveries_per_s_steady"]
        cost = 100 * (1 - thr / base) if base else None
        note = f"cost {_num(cost, 1)}% vs baseline"
        if run.get("reaction"):
            lat = run["reaction"]["latency_from_send_ms"]
            note += (
                f"; from send p50 {lat['p50']:.1f} / p99 {lat['p99']:.1f} ms at "
                f"{_num(results.get('scaling_rate'))} ev/s"
            )
        out.append((f"cost: {key[6:]}", f"{_num(thr)} deliveries/s", note))
    mem = results.get("memory")
    if _ok(mem):
        out.append(f"Memory, {mem.get('settings', 'default settings')}")
        out.append(
            (
                f"memory over {mem['events']:,} events "
                f"({'with' if mem['matching_rule'] else 'no'} matching rule)",
                f"peak RSS {mem['peak_rss_mib']:.0f} MiB",
                f"RSS {mem['rss_at_10pct_mib']:.0f} MiB at 10% -> {mem['rss_end_mib']:.0f} MiB "
                f"at end ({mem['growth_after_warmup_pct']:+.1f}%)",
            )
        )
    journeys = journey_scenarios.rows(results)
    if journeys:
        out.append("Journeys (issue 9), default settings")
    return out + journeys


@dataclass(frozen=True)
class Target:
    """One target of the issue: what was measured against which reference, met or not."""

    settings: str
    target: str
    measured: str
    reference: str
    met: bool | None  # None: not measured (or informational)
    informational: bool = False

    @property
    def mark(self) -> str:
        if self.informational:
            return "info"
        return "not measured" if self.met is None else "met" if self.met else "missed"


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.1f}%"


def _reference(name: str, value: Any, unit: str, detail: str = "") -> str:
    """How a target's reference reads: its name and figure, or that it was not measured."""
    if value is None:
        return f"{name}: not measured"
    return f"{name} {_num(value)} {unit}{detail}"


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target of the issue, as measured in this run."""
    out: list[Target] = []
    celery = _get(results, "celery", "deliveries_per_s_steady")
    for mode in MODES:
        e2e = _get(results, f"e2e_batch_{mode}", "deliveries_per_s_steady")
        single = _get(results, f"e2e_single_{mode}", "deliveries_per_s_steady")
        lat = _get(results, f"reaction_{mode}", "latency_from_send_ms")
        ingest = _get(results, f"ingest_batch_{mode}", "events_per_s_steady")
        if all(v is None for v in (e2e, single, lat, ingest)):
            continue
        keys = [f"{k}_{mode}" for k in ("e2e_batch", "e2e_single", "reaction", "ingest_batch")]
        settings = _settings_of(results, *keys)
        e2e_ref = _reference("e2e batches", e2e, "deliveries/s")
        for client in CLIENTS:
            best = _get(results, f"limit_{client}", "deliveries_per_s_steady")
            at = _get(results, f"limit_{client}", "best_concurrency")
            ratio = _ratio(e2e, best)
            info = client != "aiohttp"
            out.append(
                Target(
                    settings,
                    f"e2e batches of 100 {'vs' if info else '>='} {client}'s best"
                    + (" (aiohttp's is about 40%)" if info else ""),
                    _pct(ratio),
                    _reference(f"{client}'s best", best, "req/s", f" at {at} in flight"),
                    None if ratio is None else ratio >= 1.0,
                    informational=info,
                )
            )
        ratio = _ratio(single, e2e)
        out.append(
            Target(
                settings,
                "e2e one event per request >= 50% of batches",
                _pct(ratio),
                e2e_ref,
                None if ratio is None else ratio >= 0.5,
            )
        )
        rate = _get(results, f"reaction_{mode}", "offered_events_per_s")
        for q, limit in (("p50", 5.0), ("p99", 25.0)):
            out.append(
                Target(
                    settings,
                    f"reaction from send, {q} < {limit:g} ms at half load",
                    "-" if lat is None else f"{lat[q]:.1f} ms",
                    _reference("offered", rate, "ev/s", f"; {e2e_ref}"),
                    None if lat is None else lat[q] < limit,
                )
            )
        times = _ratio(e2e, celery)
        out.append(
            Target(
                settings,
                "e2e batches of 100 >= 8x Celery",
                "-" if times is None else f"{times:.2f}x",
                _reference("Celery", celery, "deliveries/s"),
                None if times is None else times >= 8,
            )
        )
        out.append(
            Target(
                settings,
                "ingest alone, batches of 100 >= 40,000 events/s",
                "-" if ingest is None else f"{ingest:,.0f} ev/s",
                "a fixed figure",
                None if ingest is None else ingest >= 40_000,
            )
        )
    out += _scale_targets(results)
    out += _memory_targets(results)
    out += _journey_targets(results)
    return out


def _scale_targets(results: dict[str, Any]) -> list[Target]:
    base = _get(results, "scale_baseline", "throughput", "deliveries_per_s_steady")
    if base is None:
        return []
    settings = _settings_of(results, "scale_baseline")
    counts = results.get("counts", {})
    rules = max(counts.get("extra_rules") or [0])
    many_users = counts.get("many_users", 0)
    dests = counts.get("many_dests", 0)
    reference = _reference(
        f"1 rule, 1 destination, {results.get('users', 0):,} users:", base, "deliveries/s"
    )
    out: list[Target] = []
    for key, noun, count, target_count in (
        (f"rules_{rules}", "extra rules", rules, 10_000),
        (f"users_{many_users}", "users", many_users, 1_000_000),
    ):
        thr = _get(results, f"scale_{key}", "throughput", "deliveries_per_s_steady")
        cost = 100 * (1 - thr / base) if thr is not None else None
        short = "" if count >= target_count else f" (the target is {target_count:,})"
        out.append(
            Target(
                settings,
                f"{count:,} {noun} cost <= 10%{short}",
                "-" if cost is None else f"{cost:.1f}%",
                reference,
                None if cost is None else cost <= 10,
            )
        )
    thr = _get(results, f"scale_dests_{dests}", "throughput", "deliveries_per_s_steady")
    ratio = _ratio(thr, base)
    out.append(
        Target(
            settings,
            f"{dests:,} destinations >= 50% of one"
            + ("" if dests >= 1_000 else " (the target is 1,000)"),
            _pct(ratio),
            reference,
            None if ratio is None else ratio >= 0.5,
        )
    )
    return out


def _journey_targets(results: dict[str, Any]) -> list[Target]:
    """Issue 9's journey targets, when a journey step ran (its servers run at defaults)."""
    if not any(key.startswith("journey_") and key != "journey_counts" for key in results):
        return []
    return [
        Target("default settings", target.removeprefix("[FULL] "), measured, "issue 9", met)
        for target, measured, met in journey_scenarios.targets(results)
    ]


def _memory_targets(results: dict[str, Any]) -> list[Target]:
    mem = results.get("memory")
    if not _ok(mem):
        return []
    settings = str(mem.get("settings", "default settings"))
    events = mem["events"]
    return [
        Target(
            settings,
            f"peak RSS < 300 MB over {events:,} events"
            + ("" if events >= 1_000_000 else " (the target is 1,000,000)"),
            f"{mem['peak_rss_mib'] * 1.048576:.0f} MB",
            "a fixed figure",
            mem["peak_rss_mib"] * 1.048576 < 300,
        ),
        Target(
            settings,
            "RSS growth after warm-up <= 10%",
            f"{mem['growth_after_warmup_pct']:+.1f}%",
            "RSS at 10% of the run",
            mem["growth_after_warmup_pct"] <= 10,
        ),
    ]


def table(results: dict[str, Any]) -> str:
    """The printed report."""
    m = results["machine"]
    kind = (
        " (QUICK: short runs, a smoke test)"
        if results["quick"]
        else " (PARTIAL: some steps left out)"
        if results.get("partial")
        else ""
    )
    lines = [
        "",
        f"hookline benchmark{kind}"
        f" - {m['date']} - {m['cores']} cores - Python {m['python']} - "
        f"commit {m['git_commit'][:10]}"
        f"{' + uncommitted src changes' if m['git_dirty_src'] else ''}",
        f"command: {results['command']}   ({results.get('seconds', 0)} s)",
        defaults_line(results),
        "",
    ]
    refs = reference_rows(results)
    if refs:
        lines += [*refs, ""]
    figures = rows(results)
    cells = [r for r in figures if isinstance(r, tuple)]
    w1 = max((len(r[0]) for r in cells), default=10)
    w2 = max((len(r[1]) for r in cells), default=10)
    for row in figures:
        if isinstance(row, str):
            lines.append(row)
        else:
            a, b, c = row
            lines.append(f"  {a:<{w1}}  {b:>{w2}}  {c}".rstrip())
    checks = targets(results)
    first = {t.settings: i for i, t in reversed(list(enumerate(checks)))}
    checks.sort(key=lambda t: first[t.settings])
    w = max((len(t.target) for t in checks), default=10)
    wm = max((len(t.measured) for t in checks), default=10)
    heading = None
    for t in checks:
        if t.settings != heading:
            heading = t.settings
            lines += ["", f"Targets, {heading}:"]
        lines.append(f"  {t.target:<{w}}  {t.measured:>{wm}}  {t.mark:<12}  vs {t.reference}")
    if results.get("failures"):
        lines += ["", "Problems seen:"] + [f"  - {f}" for f in results["failures"]]
    return "\n".join(lines)


def finish(results: dict[str, Any], directory: Path, name: str = "latest") -> None:
    """Print the table, write the JSON (timestamped and ``name``.json) and ``name``.png."""
    results["targets"] = [{**asdict(t), "mark": t.mark} for t in targets(results)]
    print(table(results), flush=True)
    try:
        plot(results, directory / f"{name}.png")
    except Exception as exc:  # the chart must never cost the figures
        print(f"(no chart: {type(exc).__name__}: {exc})")
    # Each latency sample is in the chart; the JSON keeps the percentiles (it is committed).
    data = orjson.dumps(_without(results, LATENCY_KEYS), option=orjson.OPT_INDENT_2)
    stamp = results["machine"]["date"].replace(":", "").replace("+0000", "Z")
    suffix = "-quick" if results["quick"] else "-partial" if results.get("partial") else ""
    (directory / f"{stamp}{suffix}.json").write_bytes(data)
    (directory / f"{name}.json").write_bytes(data)
    print(f"\nJSON: {directory / f'{name}.json'}   chart: {directory / f'{name}.png'}")


def _without(value: Any, keys: set[str]) -> Any:
    """``value`` with every dict entry named in ``keys`` left out, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def plot(results: dict[str, Any], path: Path) -> None:
    """The whole e2e runs second by second against both references, the references'
    curves, and the reaction-time distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (runs, curves, reaction) = plt.subplots(1, 3, figsize=(19, 7))
    best = {c: _get(results, f"limit_{c}", "deliveries_per_s_steady") for c in CLIENTS}
    colours = {"aiohttp": "tab:red", "pyreqwest": "tab:purple", **MODE_COLOURS}
    for mode in MODES:
        for kind, style in (("batch", "-"), ("single", ":")):
            run = results.get(f"e2e_{kind}_{mode}")
            if not _ok(run):
                continue
            label = f"{kind}, {_short(run.get('settings', mode))}"
            series = run["deliveries_per_second_series"]
            runs.plot(
                range(len(series)),
                series,
                color=colours[mode],
                linestyle=style,
                label=f"delivered/s ({label})",
            )
            if kind == "batch":
                accepted = run["accepted_per_second_series"]
                runs.plot(
                    range(len(accepted)),
                    accepted,
                    color=colours[mode],
                    linestyle="--",
                    alpha=0.6,
                    label=f"accepted/s ({label})",
                )
    for client, value in best.items():
        if value:
            runs.axhline(
                value, color=colours[client], linestyle="-.", label=f"{client}'s best {value:,.0f}"
            )
    runs.set_title("hookline end to end, the whole run (load, then draining)")
    runs.set_xlabel("seconds since the load started")
    runs.set_ylabel("per second")
    runs.set_ylim(bottom=0)
    _legend_below(runs)

    for client in CLIENTS:
        sweep = results.get(f"limit_{client}")
        if _ok(sweep):
            points = sorted((int(k), v) for k, v in sweep["curve"].items())
            curves.plot(
                [p for p, _ in points],
                [v for _, v in points],
                marker="o",
                color=colours[client],
                label=client,
            )
    e2e = _get(results, "e2e_batch_full", "deliveries_per_s_steady")
    if e2e:
        settings = _settings_of(results, "e2e_batch_full")
        curves.axhline(
            e2e, color="tab:blue", linestyle="--", label=f"hookline e2e, batch, {_short(settings)}"
        )
    curves.set_xscale("log", base=2)
    ticks = sorted(results.get("counts", {}).get("sweep_in_flight") or [16, 32, 64, 128, 256])
    curves.set_xticks(ticks, [str(t) for t in ticks])
    if not any(_ok(results.get(f"limit_{c}")) for c in CLIENTS):
        curves.text(0.5, 0.5, "not measured in this run", ha="center", transform=curves.transAxes)
    curves.set_title("references: client library -> receiver")
    curves.set_xlabel("requests in flight")
    curves.set_ylabel("requests/s")
    curves.set_ylim(bottom=0)
    _legend_below(curves)

    for mode in MODES:
        run = results.get(f"reaction_{mode}")
        if not _ok(run):
            continue
        rate = f"{run['offered_events_per_s']:,.0f} ev/s"
        for key, style, what in (
            ("latencies_from_send_ms", "-", "from send"),
            ("latencies_from_202_ms", ":", "from 202"),
        ):
            values = sorted(run.get(key) or [])
            if values:
                share = [100 * (i + 1) / len(values) for i in range(len(values))]
                reaction.plot(
                    values,
                    share,
                    color=colours[mode],
                    linestyle=style,
                    label=f"{what}, {_short(run['settings'])}, {rate}",
                )
    reaction.axvline(5, color="grey", linestyle="--", label="p50 target 5 ms")
    reaction.axvline(25, color="black", linestyle="--", label="p99 target 25 ms")
    reaction.set_xscale("symlog", linthresh=1)
    reaction.set_title("reaction time: request sent -> webhook arrival (CDF)")
    reaction.set_xlabel("ms")
    reaction.set_ylabel("% of events")
    _legend_below(reaction)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _short(settings: str) -> str:
    """A settings label short enough for a legend."""
    if settings == "default settings":
        return "defaults"
    return settings.replace(" (not the default)", "").replace("HOOKLINE_", "")


def _legend_below(axes: Any) -> None:
    if not axes.get_legend_handles_labels()[0]:
        return
    axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
