"""examples/fastapi_app.py in real processes: uvicorn serves it, requests add events through
AsyncYard, and a `batchyard worker` delivers every one of them (both stores)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import free_port, wait_for_http, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EVENTS = 240


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=EXAMPLES,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    return output


def _saved(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_fastapi_example_adds_events_that_a_worker_delivers(store_url, tmp_path):
    events_file = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "BATCHYARD_STORE": store_url,
        "EVENTS_FILE": str(events_file),
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
    }
    port = free_port()
    server = _start("uvicorn", "fastapi_app:app", "--port", str(port), env=env)
    worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz")

        async def post_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                return await asyncio.gather(
                    *(
                        client.post("/events", json={"user": f"u{n}", "action": "login"})
                        for n in range(EVENTS)
                    )
                )

        responses = asyncio.run(post_all())
        assert [r.status_code for r in responses] == [202] * EVENTS
        assert {r.json()["batch_id"] for r in responses} <= {"events::0", "events::1", "events::2"}
        worker = _start("batchyard", "worker", "--app", "fastapi_app:yard", env=env)
        # two batches close full; the rest is delivered by its 2 s interval
        wait_until(lambda: len(_saved(events_file)) >= EVENTS, what="every event delivered")
        saved = _saved(events_file)
        assert sorted(event["user"] for event in saved) == sorted(f"u{n}" for n in range(EVENTS))
        assert sorted({event["batch_id"] for event in saved}) == [
            "events::0",
            "events::1",
            "events::2",
        ]
    finally:
        output = _stop(server)
        if worker is not None:
            output += _stop(worker)
    assert "Application shutdown complete" in output, output
