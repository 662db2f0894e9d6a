"""A/B driver for issue 10 at hookline's *default* settings (32 in flight per destination).

``python scripts/fastbench.py [--events N] [--single N] [--env K=V ...] [--repeat R]``
runs, with the bench's own receiver, load generator and scenarios: the limit (aiohttp
straight to the receiver), hookline end to end with batches of 100 and with one event per
request, and the reaction time at half the batch figure. ``--env`` sets hookline's
environment (``HOOKLINE_SENDER=aiohttp``, say), so two configurations can be compared back
to back. It prints one line per figure; ``bench/`` stays the benchmark of record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from bench import scenarios
from bench.hookline_run import HooklineServer, HooklineSetup
from bench.procs import free_port_range


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) of ``pid`` and of each of its children, by role."""
    tick = os.sysconf("SC_CLK_TCK")

    def one(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {"server": one(pid), "senders": sum(one(int(c)) for c in children)}


class DefaultsServer(HooklineServer):
    """hookline with its default limits, plus ``env``; the bench raises the per-host one."""

    env: ClassVar[dict[str, str]] = {}

    def _start(self) -> None:
        from bench.hookline_run import hookline_argv
        from bench.procs import Child, wait_http

        env = {
            "HOOKLINE_SQLITE_SYNCHRONOUS": self.setup.synchronous,
            "HOOKLINE_LOG_LEVEL": "warning",
            "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8",
            **self.env,
        }
        self.child = Child(
            f"hookline-{self.port}", hookline_argv(self.port, self.data_dir), self.log_dir, env
        )
        wait_http(f"{self.base}/api/v1/rules", self.child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument("--limit-requests", type=int, default=20_000)
    parser.add_argument("--limit-concurrency", type=int, default=32)
    parser.add_argument("--env", action="append", default=[], help="K=V for hookline")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma list: limit,batch,single,reaction")
    args = parser.parse_args()
    DefaultsServer.env = dict(item.split("=", 1) for item in args.env)
    skip = set(args.skip.split(","))
    work_dir = Path(tempfile.mkdtemp(prefix="hookline-fastbench-"))
    log_dir = work_dir / "logs"
    log_dir.mkdir()
    receiver, bench = scenarios.start_receiver(work_dir, log_dir, 1, free_port_range(1))
    figures: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)
        print(f"  {name}: {value:,.1f}", flush=True)

    def server() -> DefaultsServer:
        return DefaultsServer(HooklineSetup(), bench.receiver_port, work_dir, log_dir)

    try:
        for _ in range(args.repeat):
            if "limit" not in skip:
                got = scenarios.limit(bench, args.limit_requests, args.limit_concurrency)
                note("limit req/s", got["deliveries_per_s_steady"])
            batch_rate = 0.0
            if "batch" not in skip:
                with server() as hl:
                    before = cpu_seconds(hl.pid)
                    got = scenarios.hookline_e2e(bench, hl, args.events, 100, 16, "fb-batch")
                    after = cpu_seconds(hl.pid)
                batch_rate = got["deliveries_per_s_steady"]
                note("batch deliveries/s", batch_rate)
                # CPU per delivery is steadier than a rate on a machine shared with others.
                for role in before:
                    used = after[role] - before[role]
                    note(f"batch {role} CPU us/delivery", used * 1e6 / args.events)
            if "single" not in skip:
                with server() as hl:
                    before = cpu_seconds(hl.pid)
                    got = scenarios.hookline_e2e(bench, hl, args.single, 1, 128, "fb-single")
                    after = cpu_seconds(hl.pid)
                note("single deliveries/s", got["deliveries_per_s_steady"])
                for role in before:
                    used = after[role] - before[role]
                    note(f"single {role} CPU us/delivery", used * 1e6 / args.single)
            if "reaction" not in skip and batch_rate:
                with server() as hl:
                    got = scenarios.reaction(
                        bench, hl, batch_rate / 2, args.latency_seconds, 2.0, 128, "fb-react"
                    )
                lat: dict[str, Any] = got["latency_from_send_ms"]
                note("reaction from send p50 ms", lat["p50"])
                note("reaction from send p99 ms", lat["p99"])
    finally:
        bench.remote.close()
        receiver.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    if bench.failures:
        print("failures:", *bench.failures, sep="\n  ")
    print("medians:", flush=True)
    for name, values in figures.items():
        print(f"  {name}: {statistics.median(values):,.1f}  (runs: {values})")


if __name__ == "__main__":
    main()
