"""``python -m bench [--quick]``: every measurement of the "Performance" issue in one run.

All components talk only to 127.0.0.1, each in its own process, started and always stopped
here. Results: a table on stdout, JSON and a PNG under bench/results/.
"""

from __future__ import annotations

import argparse
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
from bench.hookline_run import HooklineServer, HooklineSetup
from bench.procs import free_port_range

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Counts:
    """How much each measurement sends; ``--quick`` shrinks all of them."""

    limit_requests: int = 50_000
    celery_events: int = 10_000
    e2e_events: int = 50_000
    single_events: int = 10_000
    latency_seconds: float = 20.0
    latency_warmup: float = 3.0
    ingest_events: int = 200_000
    ingest_single_events: int = 20_000
    scale_events: int = 30_000
    extra_rules: tuple[int, ...] = (1_000, 10_000)
    many_users: int = 1_000_000
    many_dests: int = 1_000
    memory_events: int = 1_000_000


# Throughput runs per scaling setup; the median is the figure.
SCALE_REPEATS = 3

QUICK = Counts(
    limit_requests=5_000,
    celery_events=1_000,
    e2e_events=2_000,
    single_events=500,
    latency_seconds=4.0,
    latency_warmup=1.0,
    ingest_events=5_000,
    ingest_single_events=1_000,
    scale_events=2_000,
    extra_rules=(100, 1_000),
    many_users=100_000,
    many_dests=100,
    memory_events=20_000,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run of about two minutes"
    )
    for name, value in asdict(Counts()).items():
        if isinstance(value, tuple):
            parser.add_argument(f"--{name.replace('_', '-')}", type=_int_tuple, default=None)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--users", type=int, default=10_000, help="users holding state (baseline)")
    parser.add_argument("--modes", default="FULL,NORMAL", help="HOOKLINE_SQLITE_SYNCHRONOUS values")
    parser.add_argument("--batch-connections", type=int, default=16)
    parser.add_argument("--single-connections", type=int, default=128)
    parser.add_argument("--memory-with-rule", action="store_true", help="memory run delivers too")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--skip",
        default="",
        help="comma list: limit,celery,e2e,scaling,memory,journeys (or journey_throughput, "
        "journey_timers, journey_waiting)",
    )
    for name in asdict(journey_scenarios.JourneyCounts()):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    return parser.parse_args(argv)


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def counts_from(args: argparse.Namespace) -> Counts:
    counts = QUICK if args.quick else Counts()
    given = {k: getattr(args, k) for k in asdict(counts) if getattr(args, k) is not None}
    return replace(counts, **given)


def journey_counts_from(args: argparse.Namespace) -> journey_scenarios.JourneyCounts:
    counts = journey_scenarios.QUICK if args.quick else journey_scenarios.JourneyCounts()
    given = {k: getattr(args, k) for k in asdict(counts) if getattr(args, k) is not None}
    return replace(counts, **given)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    counts = counts_from(args)
    skip = set(filter(None, args.skip.split(",")))
    from hookline.settings import Settings

    concurrency = Settings().max_concurrency
    RESULTS.mkdir(exist_ok=True)
    log_dir = RESULTS / "logs-latest"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir()
    work_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    first_port = free_port_range(max(counts.many_dests, 1))
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": report.machine(),
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "quick": args.quick,
        "counts": asdict(counts),
        "journey_counts": asdict(journey_counts_from(args)),
        "concurrency": concurrency,
        "users": args.users,
        "failures": [],
    }
    receiver, bench = scenarios.start_receiver(work_dir, log_dir, counts.many_dests, first_port)
    try:
        run_all(bench, args, counts, concurrency, skip, results)
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
        results["interrupted"] = True
    finally:
        bench.remote.close()
        receiver.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        results["failures"] = bench.failures
        results["seconds"] = round(time.monotonic() - started, 1)
    report.finish(results, RESULTS)
    return 0


def run_all(
    bench: scenarios.Bench,
    args: argparse.Namespace,
    counts: Counts,
    concurrency: int,
    skip: set[str],
    results: dict[str, Any],
) -> None:
    """Run every measurement in order, storing each as soon as it is done."""

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
    if "limit" not in skip:
        step(
            "limit",
            "limit: aiohttp -> receiver",
            lambda: scenarios.limit(bench, counts.limit_requests, concurrency),
        )
    if "celery" not in skip:
        step(
            "celery",
            "FastAPI + Celery + requests",
            lambda: scenarios.celery(bench, counts.celery_events, 100, batch_c, args.redis_url),
        )

    base = HooklineSetup(users=args.users)
    half_rate = 0.0
    for mode in args.modes.split(",") if "e2e" not in skip else ():
        setup = replace(base, synchronous=mode)
        no_rule = replace(setup, dests=0)
        key = mode.lower()
        e2e = step(
            f"e2e_batch_{key}",
            f"hookline e2e, batches of 100, {mode}",
            on_server(
                setup,
                partial(
                    scenarios.hookline_e2e,
                    bench,
                    events=counts.e2e_events,
                    batch=100,
                    connections=batch_c,
                    run=f"e2e-b-{key}",
                ),
            ),
        )
        step(
            f"e2e_single_{key}",
            f"hookline e2e, one event per request, {mode}",
            on_server(
                setup,
                partial(
                    scenarios.hookline_e2e,
                    bench,
                    events=counts.single_events,
                    batch=1,
                    connections=single_c,
                    run=f"e2e-s-{key}",
                ),
            ),
        )
        rate = 0.5 * e2e.get("deliveries_per_s_steady", 0.0)
        if mode == "FULL" or not half_rate:
            half_rate = rate
        if rate > 0:
            step(
                f"reaction_{key}",
                f"reaction time at {rate:,.0f} events/s (half of the e2e maximum), {mode}",
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
        step(
            f"ingest_batch_{key}",
            f"ingest only, batches of 100, {mode}",
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
        step(
            f"ingest_single_{key}",
            f"ingest only, one event per request, {mode}",
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

    if "scaling" not in skip and half_rate > 0:
        scale_setups = {
            "baseline": base,
            **{f"rules_{n}": replace(base, extra_rules=n) for n in counts.extra_rules},
            f"users_{counts.many_users}": replace(base, users=counts.many_users),
            f"dests_{counts.many_dests}": replace(base, dests=counts.many_dests),
        }
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
                return {
                    "setup": asdict(hl.setup),
                    "throughput": runs[len(runs) // 2],
                    "throughput_runs": [r.get("deliveries_per_s_steady") for r in runs],
                    "reaction": scenarios.reaction(
                        bench, hl, half_rate, lat_s, warm_s, single_c, f"sc-lat-{name}"
                    ),
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

    if "journeys" not in skip:
        journey_scenarios.run_all(
            bench, journey_counts_from(args), args.users, batch_c, step, on_server, skip
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
