"""``python -m bench [--quick]``: every measurement of the "Performance" issue in one run.

All components talk only to 127.0.0.1, each in its own process, started and always stopped
here. Results: a table on stdout, JSON and a PNG under bench/results/.
"""

from __future__ import annotations

import argparse
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from bench import journey_scenarios, report, scenarios
from bench.hookline_run import NEEDED_ENV, HooklineServer, HooklineSetup
from bench.procs import free_port_range
from bench.steps import GROUPS, STEPS, Skipped

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Counts:
    """How long or how much each measurement sends; ``--quick`` shrinks all of them."""

    # The references: each client library at each of these in flight, this long per point.
    sweep_in_flight: tuple[int, ...] = (16, 32, 64, 128, 256)
    sweep_seconds: float = 6.0
    celery_events: int = 10_000
    # The headline runs: long enough to be steady (the issue asks for at least 30 s).
    e2e_seconds: float = 30.0
    single_seconds: float = 30.0
    latency_seconds: float = 30.0
    latency_warmup: float = 3.0
    ingest_events: int = 200_000
    ingest_single_events: int = 20_000
    # Counted, not timed: hookline accepts faster than it delivers, so a timed load would
    # leave a backlog that grows with every speed-up of ingest.
    scale_events: int = 30_000
    scale_latency_seconds: float = 10.0
    extra_rules: tuple[int, ...] = (1_000, 10_000)
    many_users: int = 1_000_000
    many_dests: int = 1_000
    memory_events: int = 1_000_000


# Throughput runs per scaling setup; the median is the figure.
SCALE_REPEATS = 3

QUICK = Counts(
    sweep_seconds=1.5,
    celery_events=1_000,
    e2e_seconds=5.0,
    single_seconds=4.0,
    latency_seconds=4.0,
    latency_warmup=1.0,
    ingest_events=5_000,
    ingest_single_events=1_000,
    scale_events=2_000,
    scale_latency_seconds=3.0,
    extra_rules=(100, 1_000),
    many_users=100_000,
    many_dests=100,
    memory_events=20_000,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog=f"steps (for --only / --skip): {', '.join(STEPS)}; "
        + "; ".join(f"{k} = {', '.join(v)}" for k, v in GROUPS.items()),
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs: a smoke test of about three minutes"
    )
    for name, value in asdict(Counts()).items():
        if isinstance(value, tuple):
            parser.add_argument(f"--{name.replace('_', '-')}", type=_int_tuple, default=None)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--users", type=int, default=10_000, help="users holding state (baseline)")
    parser.add_argument(
        "--modes",
        default="FULL,NORMAL",
        help="HOOKLINE_SQLITE_SYNCHRONOUS values; those not the default are labelled as such",
    )
    parser.add_argument("--batch-connections", type=int, default=16)
    parser.add_argument("--single-connections", type=int, default=128)
    parser.add_argument("--memory-with-rule", action="store_true", help="memory run delivers too")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--only", default="", help="comma list of steps to run, the rest skipped")
    parser.add_argument("--skip", default="", help="comma list of steps to leave out")
    parser.add_argument(
        "--reaction-rate",
        type=float,
        default=None,
        help="events/s for the reaction runs (default: half of the e2e-batch figure)",
    )
    parser.add_argument(
        "--hookline-env",
        action="append",
        default=[],
        metavar="HOOKLINE_NAME=VALUE",
        help="run every hookline with this setting (repeatable); its figures say so",
    )
    for name in asdict(journey_scenarios.JourneyCounts()):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        args.skipped = Skipped(args.only, args.skip)
        args.overrides = _overrides(args.hookline_env)
    except ValueError as exc:
        parser.error(str(exc))
    needs_rate = "reaction" not in args.skipped and "e2e-batch" in args.skipped
    if needs_rate and args.reaction_rate is None:
        parser.error("reaction needs a rate: run e2e-batch too, or give --reaction-rate")
    return args


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _overrides(pairs: list[str]) -> dict[str, str]:
    """``HOOKLINE_NAME=value`` pairs, checked the way ``hookline serve`` checks them."""
    from hookline.errors import HooklineError
    from hookline.settings import Settings

    overrides: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("HOOKLINE_"):
            raise ValueError(f"--hookline-env takes HOOKLINE_NAME=VALUE, not {pair!r}")
        overrides[name] = value
    try:
        Settings.from_env(overrides)
    except HooklineError as exc:
        raise ValueError(f"--hookline-env: {exc}") from exc
    return overrides


def counts_from(args: argparse.Namespace) -> Counts:
    counts = QUICK if args.quick else Counts()
    given = {k: getattr(args, k) for k in asdict(counts) if getattr(args, k) is not None}
    return replace(counts, **given)


def hookline_defaults() -> dict[str, Any]:
    """The settings ``hookline serve`` runs with when given none: what the headline measures."""
    from hookline.settings import Settings

    defaults = Settings()
    return {
        "max_concurrency": defaults.max_concurrency,
        "max_per_host": defaults.max_per_host,
        "sender_processes": defaults.senders,
        "sqlite_synchronous": defaults.sqlite_synchronous,
        "log_level": defaults.log_level,
        "default_timeout": defaults.default_timeout,
    }


def journey_counts_from(args: argparse.Namespace) -> journey_scenarios.JourneyCounts:
    counts = journey_scenarios.QUICK if args.quick else journey_scenarios.JourneyCounts()
    given = {k: getattr(args, k) for k in asdict(counts) if getattr(args, k) is not None}
    return replace(counts, **given)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    counts = counts_from(args)
    skipped: Skipped = args.skipped
    RESULTS.mkdir(exist_ok=True)
    log_dir = RESULTS / "logs-latest"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir()
    work_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    # A random start, so that two benches started at once on a shared machine (each checks
    # before its receiver binds) rarely pick the same ports; below the ephemeral range.
    first_port = free_port_range(max(counts.many_dests, 1), 21000 + random.randrange(10_000))
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": report.machine(),
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "quick": args.quick,
        "partial": skipped.partial,
        "counts": asdict(counts),
        "hookline_defaults": hookline_defaults(),
        "hookline_env": NEEDED_ENV,
        "hookline_overrides": args.overrides,
        "journey_counts": asdict(journey_counts_from(args)),
        "users": args.users,
        "failures": [],
    }
    receiver, bench = scenarios.start_receiver(work_dir, log_dir, counts.many_dests, first_port)
    try:
        run_all(bench, args, counts, skipped, results)
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
        results["interrupted"] = True
    finally:
        bench.remote.close()
        receiver.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        results["failures"] = bench.failures
        results["seconds"] = round(time.monotonic() - started, 1)
    reference = not (args.quick or skipped.partial or results.get("interrupted"))
    report.finish(results, RESULTS, "latest" if reference else "latest-partial")
    return 0


def run_all(
    bench: scenarios.Bench,
    args: argparse.Namespace,
    counts: Counts,
    skip: Skipped,
    results: dict[str, Any],
) -> None:
    """Run every measurement not skipped, in order, storing each as soon as it is done."""

    def step(key: str, label: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        print(f"- {label} ...", flush=True)
        t0 = time.monotonic()
        try:
            value = measure()
        except Exception as exc:
            bench.note_failure(f"{label}: {type(exc).__name__}: {exc}")
            value = {"error": f"{type(exc).__name__}: {exc}"}
        value["wall_s"] = round(time.monotonic() - t0, 1)
        results[key] = value
        print(f"  {report.summary(value)}", flush=True)
        return value

    def server(setup: HooklineSetup) -> HooklineServer:
        print(f"  starting hookline ({setup.label()})", flush=True)
        return HooklineServer(setup, bench.receiver_port, bench.work_dir, bench.log_dir)

    def on_server(
        setup: HooklineSetup, measure: Callable[[HooklineServer], dict[str, Any]]
    ) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            with server(setup) as hl:
                value = measure(hl)
                value["setup_s"] = round(hl.setup_seconds, 1)
                return value

        return run

    batch_c, single_c = args.batch_connections, args.single_connections
    lat_s, warm_s = counts.latency_seconds, counts.latency_warmup
    for client in ("aiohttp", "pyreqwest"):
        if f"limit-{client}" not in skip:
            step(
                f"limit_{client}",
                f"reference: {client} -> receiver at {_in_flight(counts)} in flight, "
                f"{counts.sweep_seconds:g} s each",
                partial(
                    scenarios.limit_sweep,
                    bench,
                    client,
                    counts.sweep_in_flight,
                    counts.sweep_seconds,
                ),
            )
    if "celery" not in skip:
        step(
            "celery",
            "FastAPI + Celery + requests",
            lambda: scenarios.celery(bench, counts.celery_events, 100, batch_c, args.redis_url),
        )

    base = HooklineSetup(users=args.users).with_overrides(**args.overrides)
    default_mode = str(results["hookline_defaults"]["sqlite_synchronous"]).upper()
    half_rate = args.reaction_rate or 0.0
    for mode in args.modes.split(","):
        mode = mode.strip().upper()
        setup = (
            base if mode == default_mode else base.with_overrides(HOOKLINE_SQLITE_SYNCHRONOUS=mode)
        )
        no_rule = replace(setup, dests=0)
        key = mode.lower()
        where = setup.settings_label()
        rate = args.reaction_rate or 0.0
        if "e2e-batch" not in skip:
            e2e = step(
                f"e2e_batch_{key}",
                f"hookline e2e, batches of 100, {counts.e2e_seconds:g} s, {where}",
                on_server(
                    setup,
                    partial(
                        scenarios.hookline_e2e,
                        bench,
                        events=0,
                        seconds=counts.e2e_seconds,
                        batch=100,
                        connections=batch_c,
                        run=f"e2e-b-{key}",
                    ),
                ),
            )
            rate = rate or 0.5 * e2e.get("deliveries_per_s_steady", 0.0)
        if mode == default_mode or not half_rate:
            half_rate = rate
        if "e2e-single" not in skip:
            step(
                f"e2e_single_{key}",
                f"hookline e2e, one event per request, {counts.single_seconds:g} s, {where}",
                on_server(
                    setup,
                    partial(
                        scenarios.hookline_e2e,
                        bench,
                        events=0,
                        seconds=counts.single_seconds,
                        batch=1,
                        connections=single_c,
                        run=f"e2e-s-{key}",
                    ),
                ),
            )
        if "reaction" not in skip and rate > 0:
            step(
                f"reaction_{key}",
                f"reaction time at {rate:,.0f} events/s "
                f"({'given' if args.reaction_rate else 'half of the e2e batch figure'}), {where}",
                on_server(
                    setup,
                    partial(
                        scenarios.reaction,
                        bench,
                        rate=rate,
                        duration=lat_s,
                        warmup=warm_s,
                        connections=single_c,
                        run=f"lat-{key}",
                    ),
                ),
            )
        if "ingest-batch" not in skip:
            step(
                f"ingest_batch_{key}",
                f"ingest only, batches of 100, {where}",
                on_server(
                    no_rule,
                    partial(
                        scenarios.ingest_only,
                        bench,
                        events=counts.ingest_events,
                        batch=100,
                        connections=batch_c,
                        run=f"in-b-{key}",
                    ),
                ),
            )
        if "ingest-single" not in skip:
            step(
                f"ingest_single_{key}",
                f"ingest only, one event per request, {where}",
                on_server(
                    no_rule,
                    partial(
                        scenarios.ingest_only,
                        bench,
                        events=counts.ingest_single_events,
                        batch=1,
                        connections=single_c,
                        run=f"in-s-{key}",
                    ),
                ),
            )

    scale_setups = {
        **(
            {f"rules_{n}": replace(base, extra_rules=n) for n in counts.extra_rules}
            if "scale-rules" not in skip
            else {}
        ),
        **(
            {f"users_{counts.many_users}": replace(base, users=counts.many_users)}
            if "scale-users" not in skip
            else {}
        ),
        **(
            {f"dests_{counts.many_dests}": replace(base, dests=counts.many_dests)}
            if "scale-dests" not in skip
            else {}
        ),
    }
    if scale_setups:
        # Every cost is measured against the same baseline, run the same way, first.
        scale_setups = {"baseline": base, **scale_setups}
        results["scaling_rate"] = half_rate
        for name, scale_setup in scale_setups.items():

            def measure(hl: HooklineServer, name: str = name) -> dict[str, Any]:
                # Costs are differences of a few percent: take the median of three runs,
                # the same for every setup, so one noisy run does not decide a verdict.
                runs = sorted(
                    (
                        scenarios.hookline_e2e(
                            bench, hl, counts.scale_events, 100, batch_c, f"sc-{name}-{i}"
                        )
                        for i in range(SCALE_REPEATS)
                    ),
                    key=lambda r: float(r.get("deliveries_per_s_steady", 0.0)),
                )
                reaction = None
                if half_rate > 0:
                    reaction = scenarios.reaction(
                        bench,
                        hl,
                        half_rate,
                        counts.scale_latency_seconds,
                        warm_s,
                        single_c,
                        f"sc-lat-{name}",
                    )
                return {
                    "setup": asdict(hl.setup),
                    "settings": hl.setup.settings_label(),
                    "throughput": runs[len(runs) // 2],
                    "throughput_runs": [r.get("deliveries_per_s_steady") for r in runs],
                    "reaction": reaction,
                }

            step(f"scale_{name}", f"cost: {name}", on_server(scale_setup, measure))

    if "memory" not in skip:
        mem_setup = replace(base, dests=1 if args.memory_with_rule else 0)
        step(
            "memory",
            f"memory over {counts.memory_events:,} events "
            f"({'with' if args.memory_with_rule else 'no'} matching rule)",
            on_server(
                mem_setup,
                lambda hl: scenarios.memory(bench, hl, counts.memory_events, 100, batch_c, "mem"),
            ),
        )

    if any(name not in skip for name in GROUPS["journeys"]):
        journey_scenarios.run_all(
            bench, journey_counts_from(args), args.users, batch_c, step, on_server, skip
        )


def _in_flight(counts: Counts) -> str:
    return "/".join(str(c) for c in counts.sweep_in_flight)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
