"""Campaign journeys at scale: throughput against the rule path, timer lateness, waiting memory.

Three measurements, each on its own ``hookline serve`` (see hookline_run.py):

- **throughput**: the rule path (one rule, as in scenario 3) and then a journey
  ``entry -> webhook -> delay 1 s -> webhook`` at the same load, on the same server, so the
  ratio holds on a noisy machine. Both webhooks of the journey count as deliveries.
- **timer lateness**: N users enter a journey whose ``delay`` is ``until`` one minute of
  the clock (UTC), chosen so that loading finishes first: all N timers fall due at the same
  instant. Lateness = the moment the step ran (its delivery's ``created_at``, written in the
  same commit as the step) minus that instant; arrival at the receiver is reported beside it.
- **waiting memory**: N users enter a journey and wait in a one-day delay; hookline's
  peak RSS while they are loaded and wait, and what the database grew by.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stats
from bench.hookline_run import HooklineServer, HooklineSetup
from bench.procs import RssSampler
from bench.scenarios import NS, Bench, _ingest_figures, check_alive, hookline_e2e
from bench.workload import BODY_TEMPLATE

JOURNEY_TYPE = "bench_journey"
TIMER_TYPE = "bench_timer"
WAIT_TYPE = "bench_wait"
# The journey's targets (issue 9).
THROUGHPUT_SHARE = 0.5
LATENESS_P99_MS = 1000.0
WAITING_RSS_MB = 300.0


@dataclass(frozen=True)
class JourneyCounts:
    """How much each journey measurement sends; ``--quick`` shrinks them."""

    journey_events: int = 50_000
    journey_timers: int = 100_000
    journey_waiting: int = 1_000_000


QUICK = JourneyCounts(journey_events=3_000, journey_timers=5_000, journey_waiting=50_000)

Step = Callable[[str, str, Callable[[], dict[str, Any]]], dict[str, Any]]
OnServer = Callable[
    [HooklineSetup, Callable[[HooklineServer], dict[str, Any]]], Callable[[], dict[str, Any]]
]


def run_all(
    bench: Bench,
    counts: JourneyCounts,
    users: int,
    connections: int,
    step: Step,
    on_server: OnServer,
    skip: Container[str] = (),
) -> None:
    """The three journey measurements, in order (each stored by ``step`` as it finishes).

    ``skip`` names measurements to leave out (``journey_timers`` ...), to rerun one alone.
    """
    events, timers, waiting = counts.journey_events, counts.journey_timers, counts.journey_waiting
    if "journey_throughput" not in skip:
        step(
            "journey_throughput",
            f"journey entry -> webhook -> delay 1 s -> webhook vs one rule, {events:,} events each",
            on_server(
                HooklineSetup(users=users),
                lambda hl: throughput(bench, hl, events, connections),
            ),
        )
    if "journey_timers" not in skip:
        step(
            "journey_timers",
            f"journey timer lateness, {timers:,} timers due at once",
            on_server(
                HooklineSetup(users=0, dests=0),
                lambda hl: timer_lateness(bench, hl, timers, connections),
            ),
        )
    if "journey_waiting" not in skip:
        step(
            "journey_waiting",
            f"memory with {waiting:,} users waiting in a delay",
            on_server(
                HooklineSetup(users=0, dests=0),
                lambda hl: waiting_memory(bench, hl, waiting, connections),
            ),
        )


# --- the measurements ---------------------------------------------------------------------


def throughput(
    bench: Bench, server: HooklineServer, events: int, connections: int
) -> dict[str, Any]:
    """Rule deliveries/s, then journey deliveries/s (two webhooks per entry), same server."""
    rule = hookline_e2e(bench, server, events, 100, connections, "jr-rule")
    blocks = {
        "hello": _webhook_block(bench, BODY_TEMPLATE, "wait"),
        "wait": {"type": "delay", "duration": 1, "next": "again"},
        "again": _webhook_block(bench, BODY_TEMPLATE, None),
    }
    journey_id = create_journey(server, "bench-journey", JOURNEY_TYPE, "hello", blocks)
    bench.remote.reset()
    seq0 = bench.take_seqs(events)
    load = _load(
        bench, server, "jr-journey", JOURNEY_TYPE, events, seq0, server.setup.users, connections
    )
    ingest = _ingest_figures(load)
    expected = 2 * ingest["events_accepted"]
    received, waited = _wait_requests(bench, expected, 60 + events / 100)
    pairs = all_arrivals(bench, "jr-journey")
    times = [t for ts in pairs.values() for t in ts]
    gaps = [(ts[1] - ts[0]) / 1e6 for ts in pairs.values() if len(ts) >= 2]
    if received < expected:
        bench.note_failure(f"jr-journey: only {received} of {expected} journey deliveries arrived")
    check_alive(bench, server, "jr-journey")
    journey_rate = stats.steady_rate(times)
    rule_rate = float(rule.get("deliveries_per_s_steady", 0.0))
    return {
        "events": events,
        "rule": {k: v for k, v in rule.items() if not k.endswith("_series")},
        "journey": {
            "deliveries_per_s_steady": journey_rate,
            "deliveries_per_s_total": stats.total_rate(
                len(times), load["started_ns"], max(times, default=0)
            ),
            "deliveries_expected": expected,
            "deliveries_received": len(times),
            "drain_wait_s": round(waited, 2),
            "first_to_second_webhook_ms": stats.percentiles(gaps),
            "ingest": ingest,
            "stats": journey_stats(server, journey_id),
        },
        "share_of_rule_path": journey_rate / rule_rate if rule_rate else None,
    }


def timer_lateness(
    bench: Bench, server: HooklineServer, timers: int, connections: int
) -> dict[str, Any]:
    """``timers`` users in a delay that ends at one instant; how late each step ran."""
    # Loading runs at thousands of entries per second here; leave twice the time it needs.
    margin_s = max(15.0, 2 * timers / 2_000)
    due = _next_minute(time.time() + margin_s)
    blocks = {
        "wait": {"type": "delay", "until": due.strftime("%H:%M"), "time_zone": "UTC"},
        "ping": _webhook_block(bench, '{"seq": {{event.seq}}}', None),
    }
    blocks["wait"]["next"] = "ping"
    journey_id = create_journey(server, "bench-timers", TIMER_TYPE, "wait", blocks)
    bench.remote.reset()
    seq0 = bench.take_seqs(timers)
    load = _load(bench, server, "jr-timers", TIMER_TYPE, timers, seq0, timers, connections)
    ingest = _ingest_figures(load)
    due_ms = int(due.timestamp() * 1000)
    loaded_before_due_s = due_ms / 1000 - time.time()
    if loaded_before_due_s <= 0:
        raise RuntimeError(f"loading {timers:,} users ended {-loaded_before_due_s:.1f} s too late")
    waiting = journey_stats(server, journey_id)["active"]
    time.sleep(loaded_before_due_s)
    expected = ingest["events_accepted"]
    _, waited = bench.remote.wait_for(expected, 120 + timers / 500)
    arrivals = bench.remote.arrivals(bench.work_dir / "jr-timers-arrivals.csv")
    check_alive(bench, server, "jr-timers")
    fired = _delivery_times(server, journey_id)
    fire_late = [float(created - due_ms) for created in fired]
    # The receiver's clock is monotonic; the due time is wall-clock: one offset joins them.
    offset_ns = time.time_ns() - time.monotonic_ns()
    arrive_late = [(t + offset_ns) / 1e6 - due_ms for t in arrivals.values()]
    return {
        "timers": timers,
        "waiting_at_due": waiting,
        "loaded_before_due_s": round(loaded_before_due_s, 1),
        "ingest": ingest,
        "fired": len(fired),
        "deliveries_received": len(arrivals),
        "drain_wait_s": round(waited, 2),
        "fire_lateness_ms": stats.percentiles(fire_late),
        "arrival_lateness_ms": stats.percentiles(arrive_late),
        "all_fired_s": max(fire_late, default=0.0) / 1000,
    }


def waiting_memory(
    bench: Bench, server: HooklineServer, users: int, connections: int
) -> dict[str, Any]:
    """``users`` users enter and wait a day: hookline's peak RSS, and the database's growth."""
    blocks = {
        "wait": {"type": "delay", "duration": "1d", "next": "ping"},
        "ping": _webhook_block(bench, '{"seq": {{event.seq}}}', None),
    }
    journey_id = create_journey(server, "bench-waiting", WAIT_TYPE, "wait", blocks)
    db = server.data_dir / "hookline.db"
    size_before = _db_bytes(db)
    sampler = RssSampler(server.pid).start()
    started = time.monotonic_ns()
    try:
        seq0 = bench.take_seqs(users)
        load = _load(bench, server, "jr-waiting", WAIT_TYPE, users, seq0, users, connections)
        # Waiting, not loading: the timer loop keeps looking; nothing should grow.
        time.sleep(5)
        waiting = journey_stats(server, journey_id)["active"]
    finally:
        peak_kib = sampler.stop()
    check_alive(bench, server, "jr-waiting")
    samples = sampler.samples
    return {
        "users": users,
        "waiting": waiting,
        "ingest": _ingest_figures(load),
        "peak_rss_mib": peak_kib / 1024,
        "rss_start_mib": (samples[0][1] if samples else 0) / 1024,
        "rss_end_mib": (samples[-1][1] if samples else 0) / 1024,
        "db_growth_mib": (_db_bytes(db) - size_before) / 2**20,
        "rss_series_mib": [
            (round((t - started) / NS, 2), round(kib / 1024, 1)) for t, kib in samples
        ],
    }


# --- helpers ------------------------------------------------------------------------------


def _webhook_block(bench: Bench, body: str, nxt: str | None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "webhook",
        "activity": {"url": bench.receiver_url, "method": "POST", "body": body},
    }
    if nxt is not None:
        block["next"] = nxt
    return block


def _api(server: HooklineServer, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.base + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def create_journey(
    server: HooklineServer, name: str, trigger: str, start: str, blocks: dict[str, Any]
) -> str:
    """An active journey entered on every ``trigger`` event; its id."""
    answer = _api(
        server,
        "POST",
        "/api/v1/journeys",
        {
            "name": name,
            "status": "active",
            "entry": {"trigger": {"event_type": trigger}, "mode": "every_time"},
            "start": start,
            "blocks": blocks,
        },
    )
    return str(answer["id"])


def journey_stats(server: HooklineServer, journey_id: str) -> dict[str, Any]:
    stats_: dict[str, Any] = _api(server, "GET", f"/api/v1/journeys/{journey_id}/stats")
    return stats_


def _load(
    bench: Bench,
    server: HooklineServer,
    run: str,
    event_type: str,
    events: int,
    seq0: int,
    users: int,
    connections: int,
) -> dict[str, Any]:
    return bench.run_load(
        run,
        f"{server.base}/api/v1/events",
        *("--events", str(events), "--batch", "100", "--connections", str(connections)),
        *("--seq-start", str(seq0), "--users", str(max(users, 1))),
        *("--event-type", event_type, "--run", run),
    )


def _wait_requests(bench: Bench, expected: int, timeout: float) -> tuple[int, float]:
    """Poll until ``expected`` requests (not distinct seqs) arrived or ``timeout``."""
    started = time.monotonic()
    while True:
        requests = bench.remote.count()[0]
        waited = time.monotonic() - started
        if requests >= expected or waited > timeout:
            return requests, waited
        time.sleep(0.05)


def all_arrivals(bench: Bench, name: str) -> dict[int, list[int]]:
    """seq -> every arrival time of that seq, in order (a journey sends each seq twice)."""
    path = bench.work_dir / f"{name}-arrivals.csv"
    bench.remote.dump(path)
    found: dict[int, list[int]] = {}
    with path.open() as lines:
        for line in lines:
            seq, _, t = line.partition(",")
            found.setdefault(int(seq), []).append(int(t))
    path.unlink()
    for times in found.values():
        times.sort()
    return found


def _delivery_times(server: HooklineServer, journey_id: str) -> list[int]:
    """When each delivery of the journey was made (ms), read from the server's database."""
    db = sqlite3.connect(f"file:{server.data_dir / 'hookline.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT created_at FROM deliveries WHERE journey_id = ?", (journey_id,))
        return [int(r[0]) for r in rows]
    finally:
        db.close()


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.exists())


def _next_minute(after: float) -> dt.datetime:
    moment = dt.datetime.fromtimestamp(after, dt.UTC)
    return moment.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


# --- the report -----------------------------------------------------------------------------


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, figure, note) rows for the figures table."""
    out: list[tuple[str, str, str]] = []
    run = results.get("journey_throughput")
    if run and "error" not in run:
        share = run["share_of_rule_path"]
        gap = run["journey"]["first_to_second_webhook_ms"]
        out.append(
            (
                "8. journey entry > webhook > delay 1 s > webhook",
                f"{run['journey']['deliveries_per_s_steady']:,.0f} deliveries/s",
                f"{100 * (share or 0):.1f}% of the rule path in the same run "
                f"({run['rule']['deliveries_per_s_steady']:,.0f}/s); webhook 1 -> 2 "
                f"p50 {gap['p50']:.0f} / p99 {gap['p99']:.0f} ms",
            )
        )
    run = results.get("journey_timers")
    if run and "error" not in run:
        fire, arrive = run["fire_lateness_ms"], run["arrival_lateness_ms"]
        out.append(
            (
                f"8. journey timers, {run['timers']:,} due at once",
                f"late p50 {fire['p50']:,.0f} / p99 {fire['p99']:,.0f} ms",
                f"all fired in {run['all_fired_s']:.1f} s; arrival late p50 "
                f"{arrive['p50']:,.0f} / p99 {arrive['p99']:,.0f} ms",
            )
        )
    run = results.get("journey_waiting")
    if run and "error" not in run:
        out.append(
            (
                f"8. journey, {run['users']:,} users waiting in a delay",
                f"peak RSS {run['peak_rss_mib']:.0f} MiB",
                f"{run['waiting']:,} waiting; RSS {run['rss_start_mib']:.0f} -> "
                f"{run['rss_end_mib']:.0f} MiB; database +{run['db_growth_mib']:,.0f} MiB; "
                f"entered at {run['ingest']['events_per_s_steady']:,.0f}/s",
            )
        )
    return out


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for the journey targets of issue 9."""
    out: list[tuple[str, str, bool | None]] = []
    run = results.get("journey_throughput")
    share = run.get("share_of_rule_path") if run else None
    out.append(
        (
            "[FULL] journey deliveries/s >= 50% of the rule path",
            "-" if share is None else f"{100 * share:.1f}%",
            None if share is None else share >= THROUGHPUT_SHARE,
        )
    )
    run = results.get("journey_timers")
    p99 = run["fire_lateness_ms"]["p99"] if run and "error" not in run else None
    timers = run.get("timers", 0) if run else 0
    out.append(
        (
            f"[FULL] timer lateness p99 <= 1 s, {timers:,} due at once"
            + ("" if timers >= 100_000 else " (target is 100,000)"),
            "-" if p99 is None else f"{p99:,.0f} ms",
            None if p99 is None else p99 <= LATENESS_P99_MS,
        )
    )
    run = results.get("journey_waiting")
    mb = run["peak_rss_mib"] * 1.048576 if run and "error" not in run else None
    users = run.get("users", 0) if run else 0
    out.append(
        (
            f"[FULL] peak RSS < 300 MB, {users:,} users waiting"
            + ("" if users >= 1_000_000 else " (target is 1,000,000)"),
            "-" if mb is None else f"{mb:.0f} MB",
            None if mb is None else mb < WAITING_RSS_MB,
        )
    )
    return out
