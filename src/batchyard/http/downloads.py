"""Export downloads: a namespace streamed as a file, for the API and the dashboard alike."""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import anyio
from fastapi.responses import StreamingResponse

from batchyard.bulk.export import FORMATS
from batchyard.yard import Yard


def export_download(yard: Yard, ns: str, format: str) -> StreamingResponse:
    """The things of `ns` in `format` as an attachment, streamed from one snapshot.

    The snapshot is opened and the first chunk read before the response starts, so that an
    export that fails at once (a store that cannot be read) answers with its error status
    rather than a 200 whose body then breaks off. Called from a plain (threadpool) route:
    waiting for that first chunk blocks no event loop."""
    chunks = yard.export_to_format(ns, format)  # checks its arguments before any byte
    return StreamingResponse(
        _in_one_thread(chunks),
        media_type=FORMATS[format],
        headers={"Content-Disposition": _attachment(f"{ns}.{format}")},
    )


def _attachment(name: str) -> str:
    """A Content-Disposition for `name`: an ASCII fallback, and the exact name in RFC 5987
    form when it is not plain ASCII (headers are Latin-1; a raw name could not be sent)."""
    plain = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    if plain == name:
        return f'attachment; filename="{plain}"'
    encoded = quote(name.encode("utf-8", "surrogatepass"), safe="")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}"


def _in_one_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Run a blocking byte stream on one thread of its own (a store snapshot must not hop
    between threads), handing chunks over through a small queue: memory stays bounded
    however large the export. Waits for the stream's first chunk, raising its error if it
    fails before one."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=4)
    stop = threading.Event()
    done, empty = object(), object()

    def take() -> Any:  # a bounded wait, so that a cancelled download never strands a thread
        try:
            return handoff.get(timeout=0.5)
        except queue.Empty:
            return empty

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(done)
        except Exception as exc:  # surfaces in the response stream
            handoff.put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="batchyard-export", daemon=True)
    thread.start()
    first = handoff.get()  # the producer always hands something over: a chunk, done or error
    if isinstance(first, Exception):
        raise first

    async def stream() -> AsyncIterator[bytes]:
        item = first
        try:
            while True:
                if item is done:
                    return
                if isinstance(item, Exception):
                    raise item
                if item is not empty:
                    yield item
                item = await anyio.to_thread.run_sync(take)
        finally:
            stop.set()

    body = stream()
    # a response dropped before its body was started never runs that `finally`: the thread
    # (and the snapshot it holds open) must not wait for it forever
    weakref.finalize(body, stop.set)
    return body
