"""The usual alternative: FastAPI enqueues one Celery task per event; a worker posts each.

Two processes, started by the orchestrator:

- the endpoint: ``python -m uvicorn bench.celery_baseline:api --port P``; ``POST /events``
  takes one event or an array (hookline's envelope) and enqueues ``deliver`` per event;
- the worker: ``python -m celery -A bench.celery_baseline worker --pool prefork -c 2``;
  ``deliver`` renders the body (``json.dumps`` of a dict built from the event) and posts it
  with ``requests`` over one module-level Session (keep-alive: generous to the baseline).

Both read ``BENCH_REDIS_URL`` (the broker, a db of its own) and ``BENCH_RECEIVER_URL``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.workload import user_level

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
RECEIVER_URL = os.environ.get("BENCH_RECEIVER_URL", "http://127.0.0.1:9/hook")

app = Celery("bench_celery", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
session = requests.Session()


@app.task(name="bench.deliver")  # type: ignore[untyped-decorator]
def deliver(event: dict[str, Any]) -> int:
    """Render the webhook body from the event and POST it; the receiver's status."""
    user = event["user_ext_id"]
    body = json.dumps(
        {
            "seq": event["payload"]["seq"],
            "user": user,
            "level": user_level(int(user.rpartition("-")[2])),
            "spins": event["payload"]["spins"],
        }
    )
    response = session.post(
        RECEIVER_URL, data=body, headers={"content-type": "application/json"}, timeout=15
    )
    status: int = response.status_code
    return status


api = FastAPI()


@api.post("/events", status_code=202)
async def post_events(request: Request) -> JSONResponse:
    """Enqueue one task per event (a Redis round trip each), then answer 202."""
    parsed = json.loads(await request.body())
    events = parsed if isinstance(parsed, list) else [parsed]
    for event in events:
        deliver.delay(event)
    return JSONResponse({"accepted": len(events)}, status_code=202)
