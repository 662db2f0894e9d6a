"""The SQLite writer's ceiling for journey timer steps: the rows a step writes, and nothing else.

A timer step that ends in a webhook writes three rows: the instance moves (an UPDATE), its
delivery goes into the outbox and ``campaign_finished`` into the events. This times those
statements alone, with hookline's schema and indexes, in transactions of ``--batch`` rows on
one connection (WAL, ``synchronous=FULL``), so no Python step logic is counted: no hookline
can step timers faster than this on the same disk and core. Run by hand::

    python -m bench.timer_ceiling [--instances 100000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from sqlalchemy import create_engine

from hookline.store import schema as t

_Part = Sequence[str]


def _fresh(path: Path, instances: int) -> sqlite3.Connection:
    engine = create_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine)
    engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    entry = orjson.dumps({"event_id": "evt_x", "payload": {"seq": 1}, "event_type": "t"})
    db.execute("BEGIN")
    db.executemany(
        f"INSERT INTO {t.journey_instances.name} (id, journey_id, version, user_ext_id, "
        "ext_brand_id, status, block, block_since, entered_at, due_at, entry_event, last_event, "
        "control_group, updated_at) VALUES (?, 'jrn_1', 1, ?, NULL, 'active', 'wait', 1, 1, 1, "
        "?, ?, 0, 1)",
        [(f"jri_{i:08d}", f"u{i * 7919 % instances}", entry, entry) for i in range(instances)],
    )
    db.execute("COMMIT")
    return db


def _statements(db: sqlite3.Connection) -> dict[str, Callable[[_Part], None]]:
    headers = orjson.dumps([["content-type", "application/json"]])
    schedule = orjson.dumps([5.0, 30.0, 120.0])

    def move(part: _Part) -> None:
        db.executemany(
            f"UPDATE {t.journey_instances.name} SET status = 'finished', block = NULL, "
            "block_since = 2, due_at = NULL, waiting_for = NULL, converted_at = NULL, "
            "finish_reason = 'completed', finished_at = 2, updated_at = 2 WHERE id = ?",
            [(i,) for i in part],
        )

    def deliver(part: _Part) -> None:
        db.executemany(
            f"INSERT INTO {t.deliveries.name} (id, event_id, user_ext_id, status, method, url, "
            "host, headers, body, timeout, retry_schedule, attempts, created_at, "
            "next_attempt_at, updated_at, journey_id, instance_id) VALUES (?, 'evt_x', ?, "
            "'pending', 'POST', 'http://127.0.0.1:9/x', '127.0.0.1:9', ?, ?, 15.0, ?, 0, 2, 2, "
            "2, 'jrn_1', ?)",
            # users in no order, as the instances' are (the user index is written at random)
            [(f"dlv_{i}", f"u{i[::-1]}", headers, b'{"seq": 1}', schedule, i) for i in part],
        )

    def emit(part: _Part) -> None:
        db.executemany(
            f"INSERT INTO {t.events.name} (id, eid, event_type, user_ext_id, ext_brand_id, "
            "event_date, received_at, payload) VALUES (?, NULL, 'campaign_finished', ?, NULL, "
            "2, 2, ?)",
            [
                (f"evt_{i}", f"u{i}", b'{"journey_id": "jrn_1", "reason": "completed"}')
                for i in part
            ],
        )

    def back(part: _Part) -> None:
        db.executemany(
            f"UPDATE {t.journey_instances.name} SET status = 'active', block = 'wait', "
            "due_at = 1, finish_reason = NULL WHERE id = ?",
            [(i,) for i in part],
        )

    def all_three(part: _Part) -> None:
        move(part)
        deliver([f"b{i}" for i in part])
        emit([f"b{i}" for i in part])

    return {
        "instance UPDATE (executemany)": move,
        "delivery INSERT": deliver,
        "campaign_finished INSERT": emit,
        "(instances put back)": back,
        "all three, one step's rows": all_three,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookline-ceiling-") as tmp:
        db = _fresh(Path(tmp) / "ceiling.db", args.instances)
        ids = [f"jri_{i:08d}" for i in range(args.instances)]
        print(f"{args.instances:,} instances, transactions of {args.batch:,}")
        for name, statement in _statements(db).items():
            started = time.perf_counter()
            for start in range(0, len(ids), args.batch):
                db.execute("BEGIN IMMEDIATE")
                statement(ids[start : start + args.batch])
                db.execute("COMMIT")
            took = time.perf_counter() - started
            print(f"  {name:32s} {len(ids) / took:>10,.0f} rows/s  ({took:.2f} s)")
        db.close()


if __name__ == "__main__":
    main()
