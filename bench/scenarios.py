"""The measurements: each runs its load in a child process and reads the receiver's clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import stats
from bench.hookline_run import HooklineServer
from bench.procs import Child, ReceiverRemote, free_port, python_module, wait_http, wait_port
from bench.workload import UNMATCHED_TYPE

NS = stats.NS
MS = 1_000_000


@dataclass
class Bench:
    """What every measurement shares: the receiver, the scratch dir, the next free seq."""

    work_dir: Path
    log_dir: Path
    receiver_port: int
    remote: ReceiverRemote
    next_seq: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/hook"

    def take_seqs(self, count: int) -> int:
        """Reserve ``count`` seqs; the first one. Seqs never repeat within a bench run."""
        first = self.next_seq
        self.next_seq += count
        return first

    def child(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        return Child(name, argv, self.log_dir, env)

    def run_load(self, name: str, url: str, *args: str) -> dict[str, Any]:
        """Run ``bench.load`` to completion; its JSON result."""
        out = self.work_dir / f"{name}.json"
        child = self.child(
            name, python_module("bench.load", "--url", url, "--out", str(out), *args)
        )
        try:
            code = child.proc.wait(3600)
        finally:
            child.stop()
        if code != 0 or not out.exists():
            raise RuntimeError(f"load process {name} failed ({code}):\n{child.tail()}")
        result: dict[str, Any] = orjson.loads(out.read_bytes())
        out.unlink()
        return result

    def note_failure(self, what: str) -> None:
        self.failures.append(what)
        print(f"  !! {what}", flush=True)


def _accepted(load: dict[str, Any]) -> list[list[int]]:
    """[first seq, events, status, completion ns, sent ns] of every accepted request."""
    return [r for r in load["requests"] if r[2] in (200, 201, 202)]


def _ingest_figures(load: dict[str, Any]) -> dict[str, Any]:
    accepted = _accepted(load)
    events = sum(r[1] for r in accepted)
    return {
        "events_accepted": events,
        "events_per_s_steady": stats.steady_rate(
            [r[3] for r in accepted], [r[1] for r in accepted]
        ),
        "events_per_s_total": stats.total_rate(events, load["started_ns"], load["finished_ns"]),
        "load_seconds": (load["finished_ns"] - load["started_ns"]) / NS,
        "statuses": load["statuses"],
        "errors": load["errors"],
    }


# A backlog still draining is waited for as long as deliveries keep arriving; this long
# without a new one ends the wait (the timeout given is the outer bound).
STALL_S = 30.0


def _collect_deliveries(
    bench: Bench, name: str, expected: int, timeout: float
) -> tuple[dict[int, int], dict[str, Any]]:
    """Wait for ``expected`` deliveries; the arrivals and what was counted."""
    count, waited = bench.remote.wait_for(expected, max(timeout, 3600.0), STALL_S)
    arrivals = bench.remote.arrivals(bench.work_dir / f"{name}-arrivals.csv")
    info = {
        "deliveries_expected": expected,
        "requests_received": count,
        "deliveries_received": len(arrivals),
        "duplicates": count - len(arrivals),
        "drain_wait_s": round(waited, 2),
        "complete": len(arrivals) >= expected,
    }
    if len(arrivals) < expected:
        bench.note_failure(
            f"{name}: only {len(arrivals)} of {expected} deliveries arrived "
            f"{waited:.0f} s after the load ended (the wait ends after {STALL_S:.0f} s "
            "without a new one)"
        )
    return arrivals, info


def limit_point(bench: Bench, client: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """One point of the sweep: ``client`` straight to the receiver, ``concurrency`` in flight."""
    bench.remote.reset()
    name = f"limit-{client}-{concurrency}"
    out = bench.work_dir / f"{name}.json"
    argv = python_module(
        "bench.limit",
        *("--client", client, "--url", bench.receiver_url, "--seconds", str(seconds)),
        *("--concurrency", str(concurrency), "--seq-start", str(bench.next_seq)),
        *("--out", str(out)),
    )
    child = bench.child(name, argv)
    try:
        code = child.proc.wait(600 + seconds)
    finally:
        child.stop()
    if code != 0 or not out.exists():
        raise RuntimeError(f"the {client} run at {concurrency} in flight failed:\n{child.tail()}")
    result = orjson.loads(out.read_bytes())
    out.unlink()
    bench.next_seq = max(bench.next_seq, result["next_seq"])
    arrivals, info = _collect_deliveries(bench, name, result["ok"], 30)
    times = list(arrivals.values())
    return {
        "client": client,
        "concurrency": concurrency,
        "seconds": seconds,
        "failed": result["failed"],
        "errors": result["errors"],
        "deliveries_per_s_steady": stats.steady_rate(times),
        "deliveries_per_s_total": stats.total_rate(
            len(times), result["started_ns"], result["finished_ns"]
        ),
        **info,
    }


def limit_sweep(
    bench: Bench, client: str, in_flight: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    """``client`` at each of ``in_flight``; its limit is the best point of the curve."""
    points = [limit_point(bench, client, c, seconds) for c in in_flight]
    best = max(points, key=lambda p: float(p["deliveries_per_s_steady"]))
    return {
        "client": client,
        "seconds_per_point": seconds,
        "deliveries_per_s_steady": best["deliveries_per_s_steady"],
        "best_concurrency": best["concurrency"],
        "curve": {str(p["concurrency"]): p["deliveries_per_s_steady"] for p in points},
        "complete": all(p["complete"] for p in points),
        "points": points,
    }


def celery(
    bench: Bench, events: int, batch: int, connections: int, redis_url: str
) -> dict[str, Any]:
    """FastAPI + Celery (prefork, 2 processes) + requests, on the local Redis."""
    import redis

    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    bench.remote.reset()
    port = free_port()
    env = {"BENCH_REDIS_URL": redis_url, "BENCH_RECEIVER_URL": bench.receiver_url}
    worker = api = None
    try:
        worker = bench.child(
            "celery-worker",
            python_module(
                "celery",
                *("-A", "bench.celery_baseline", "worker", "--pool", "prefork"),
                *("--concurrency", "2", "--loglevel", "WARNING"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ),
            env,
        )
        api = bench.child(
            "celery-api",
            python_module(
                "uvicorn",
                "bench.celery_baseline:api",
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            ),
            env,
        )
        wait_http(f"http://127.0.0.1:{port}/openapi.json", api)
        time.sleep(2)  # let the worker connect to the broker before the clock starts
        seq0 = bench.take_seqs(events)
        load = bench.run_load(
            "celery-load",
            f"http://127.0.0.1:{port}/events",
            *("--events", str(events), "--batch", str(batch)),
            *("--connections", str(connections), "--seq-start", str(seq0), "--run", "celery"),
        )
        ingest = _ingest_figures(load)
        arrivals, info = _collect_deliveries(
            bench, "celery", ingest["events_accepted"], 60 + events / 50
        )
    finally:
        for child in (api, worker):
            if child is not None:
                child.stop(grace=15)
        broker.flushdb()
        broker.close()
    times = list(arrivals.values())
    return {
        "events": events,
        "batch": batch,
        "deliveries_per_s_steady": stats.steady_rate(times),
        "deliveries_per_s_total": stats.total_rate(
            len(times), load["started_ns"], max(times, default=0)
        ),
        **info,
        "ingest": ingest,
    }


def hookline_e2e(
    bench: Bench,
    server: HooklineServer,
    events: int,
    batch: int,
    connections: int,
    run: str,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """Events with a matching rule, flat out (``events`` of them, or for ``seconds`` when
    given); deliveries/s at the receiver, events/s at the load."""
    bench.remote.reset()
    seq0 = bench.next_seq
    setup = server.setup
    load = bench.run_load(
        run,
        f"{server.base}/api/v1/events",
        *("--events", str(events), "--seconds", str(seconds), "--batch", str(batch)),
        *("--connections", str(connections), "--seq-start", str(seq0)),
        *("--users", str(setup.users), "--dests", str(setup.dests), "--run", run),
    )
    bench.next_seq = max(bench.next_seq, load["next_seq"])
    ingest = _ingest_figures(load)
    accepted = ingest["events_accepted"]
    arrivals, info = _collect_deliveries(bench, run, accepted, 60 + accepted / 1000)
    times = list(arrivals.values())
    check_alive(bench, server, run)
    return {
        "events": accepted,
        "load_seconds": ingest["load_seconds"],
        "settings": server.setup.settings_label(),
        "batch": batch,
        "connections": connections,
        "deliveries_per_s_steady": stats.steady_rate(times),
        "deliveries_per_s_total": stats.total_rate(
            len(times), load["started_ns"], max(times, default=0)
        ),
        **info,
        "ingest": ingest,
        "deliveries_per_second_series": stats.per_second(times, load["started_ns"]),
        "accepted_per_second_series": _accepted_series(load),
    }


def _accepted_series(load: dict[str, Any]) -> list[int]:
    series = [0] * (int((load["finished_ns"] - load["started_ns"]) // NS) + 1)
    for _, size, _, done, _ in _accepted(load):
        series[min(len(series) - 1, int((done - load["started_ns"]) // NS))] += size
    return series


def reaction(
    bench: Bench,
    server: HooklineServer,
    rate: float,
    duration: float,
    warmup: float,
    connections: int,
    run: str,
) -> dict[str, Any]:
    """Offer ``rate`` events/s; time from the moment each request was sent (and from its
    202) to the webhook's arrival."""
    bench.remote.reset()
    expected = int(rate * duration) + 10
    seq0 = bench.take_seqs(expected)
    setup = server.setup
    load = bench.run_load(
        run,
        f"{server.base}/api/v1/events",
        *("--mode", "paced", "--rate", f"{rate:.3f}", "--duration", str(duration)),
        *("--connections", str(connections), "--seq-start", str(seq0)),
        *("--users", str(setup.users), "--dests", str(setup.dests), "--run", run),
    )
    ingest = _ingest_figures(load)
    arrivals, info = _collect_deliveries(bench, run, ingest["events_accepted"], 60 + duration)
    accepted_at: dict[int, tuple[int, int]] = {}
    for first, size, _, done, sent in _accepted(load):
        for seq in range(first, first + size):
            accepted_at[seq] = (done, sent)
    after_warmup = load["started_ns"] + int(warmup * NS)
    kept = [
        (arrivals[seq], done, sent)
        for seq, (done, sent) in accepted_at.items()
        if done >= after_warmup and seq in arrivals
    ]
    from_202 = [(arrived - done) / MS for arrived, done, _ in kept]
    from_send = [(arrived - sent) / MS for arrived, _, sent in kept]
    check_alive(bench, server, run)
    times = list(arrivals.values())
    return {
        "offered_events_per_s": rate,
        "settings": server.setup.settings_label(),
        "duration_s": duration,
        "warmup_s": warmup,
        "request_every_s": 0.01,
        # The reaction time: from the moment the producer sent the request to the arrival
        # (ingest, commit, match, render, dispatch, send).
        "latency_from_send_ms": stats.percentiles(from_send),
        # The same events timed from their 202; negative when the webhook came first.
        "latency_from_202_ms": stats.percentiles(from_202),
        "samples": len(from_send),
        "arrived_before_202": sum(1 for v in from_202 if v < 0),
        "deliveries_per_s_total": stats.total_rate(
            len(times), load["started_ns"], max(times, default=0)
        ),
        **info,
        "ingest": ingest,
        "latencies_from_send_ms": from_send,
        "latencies_from_202_ms": from_202,
    }


def ingest_only(
    bench: Bench, server: HooklineServer, events: int, batch: int, connections: int, run: str
) -> dict[str, Any]:
    """Events that match no rule: how fast hookline acknowledges them."""
    bench.remote.reset()
    seq0 = bench.take_seqs(events)
    load = bench.run_load(
        run,
        f"{server.base}/api/v1/events",
        *("--events", str(events), "--batch", str(batch), "--connections", str(connections)),
        *("--seq-start", str(seq0), "--users", str(server.setup.users)),
        *("--event-type", UNMATCHED_TYPE, "--run", run),
    )
    check_alive(bench, server, run)
    return {"events": events, "batch": batch, "connections": connections, **_ingest_figures(load)}


def check_alive(bench: Bench, server: HooklineServer, run: str) -> None:
    if not server.alive():
        bench.note_failure(f"{run}: hookline exited during the run:\n{server.tail()}")


def start_receiver(
    work_dir: Path, log_dir: Path, ports: int, first_port: int
) -> tuple[Child, Bench]:
    """The receiver process on ``ports`` consecutive ports, and the Bench around it."""
    control_port = free_port()
    child = Child(
        "receiver",
        python_module(
            "bench.receiver",
            *("--port", str(first_port), "--ports", str(ports)),
            *("--control-port", str(control_port)),
        ),
        log_dir,
    )
    wait_port(control_port, child)
    return child, Bench(work_dir, log_dir, first_port, ReceiverRemote(control_port))


def memory(
    bench: Bench, server: HooklineServer, events: int, batch: int, connections: int, run: str
) -> dict[str, Any]:
    """hookline's RSS over a long run (ingest only, or with deliveries when the server has
    a matching rule): peak (VmHWM) and growth after warm-up."""
    from bench.procs import RssSampler

    sampler = RssSampler(server.pid).start()
    before_ns = time.monotonic_ns()
    try:
        if server.setup.dests:
            figures = hookline_e2e(bench, server, events, batch, connections, run)
        else:
            figures = ingest_only(bench, server, events, batch, connections, run)
    finally:
        peak_kib = sampler.stop()
    samples = sampler.samples
    end_ns = samples[-1][0] if samples else before_ns
    at_10 = before_ns + (end_ns - before_ns) // 10
    rss_at_10 = next((kib for t, kib in samples if t >= at_10), 0)
    rss_end = samples[-1][1] if samples else 0
    return {
        **figures,
        "matching_rule": server.setup.dests > 0,
        "peak_rss_mib": peak_kib / 1024,
        "rss_at_10pct_mib": rss_at_10 / 1024,
        "rss_end_mib": rss_end / 1024,
        "growth_after_warmup_pct": (100.0 * (rss_end - rss_at_10) / rss_at_10)
        if rss_at_10
        else 0.0,
        "rss_series_mib": [
            (round((t - before_ns) / NS, 2), round(kib / 1024, 1)) for t, kib in samples
        ],
    }
