"""A FastAPI application that takes events over HTTP and hands them to batchyard without
blocking its event loop; workers deliver them, a batch at a time, to `save_events`.

    export BATCHYARD_STORE=postgresql://localhost/app    # or sqlite:///app.db
    uvicorn fastapi_app:app --port 8000                  # the API
    batchyard worker --app fastapi_app:yard              # a worker (as many as you like)

    curl -X POST localhost:8000/events -H 'content-type: application/json' \\
        -d '{"user": "ada", "action": "login"}'

A route awaits `yard.aio.add_items`: it returns once the event is committed, and the loop
serves other requests meanwhile. Requests that add at the same moment go to the database
together, in one statement.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from batchyard import FlushContext, Yard

yard = Yard()  # BATCHYARD_STORE, or sqlite:///batchyard.db


@yard.handler("save-events")
def save_events(items: list[dict[str, Any]], ctx: FlushContext) -> None:
    """Stands for a write to a warehouse: a line per event in EVENTS_FILE."""
    with open(os.environ.get("EVENTS_FILE", "events.jsonl"), "a", encoding="utf-8") as out:
        out.writelines(json.dumps({"batch_id": ctx.batch_id, **item}) + "\n" for item in items)


class Event(BaseModel):
    user: str
    action: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    yard.close()  # (its `aio` threads too)


app = FastAPI(lifespan=lifespan)


@app.post("/events", status_code=202)
async def post_event(event: Event) -> dict[str, str]:
    result = await yard.aio.add_items(
        "events",
        [event.model_dump()],
        max_batch_size=100,
        flush_interval=2.0,  # a quiet stream is delivered within 2 s
        on_flush="save-events",
    )
    return {"batch_id": result.batch_id}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
