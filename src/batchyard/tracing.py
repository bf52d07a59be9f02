"""OpenTelemetry tracing: spans around adds and flushes, and the links that join them.

batchyard speaks the OpenTelemetry API only (the ``batchyard[otel]`` extra); the application
configures a tracer provider (the SDK and an exporter) and batchyard's spans go wherever the
application's go. Without the API installed, or with no provider configured, everything here
does nothing: no span is made and nothing is written.

An add and the flush that delivers its items run apart - in other processes, often minutes
apart - so the flush cannot be the add's child. Instead an add that runs inside a sampled
span stores that span's context with its items (a W3C ``traceparent`` string), and the flush
starts its span with a link to each distinct context among the items it delivers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from time import monotonic
from typing import Any, TypeVar

try:
    from opentelemetry import trace as _trace
except ImportError:  # the extra is not installed: tracing is off
    _trace = None  # type: ignore[assignment]

# a flush links to at most this many adds (the SDK keeps 128 links a span by default; a
# flush of thousands of single-item adds would otherwise carry thousands)
MAX_LINKS = 32

if _trace is not None:
    _tracer = _trace.get_tracer("batchyard")
    _NO_OP_PROVIDERS = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
    _SAMPLED = _trace.TraceFlags(_trace.TraceFlags.SAMPLED)


T = TypeVar("T")

_provider_seen = False  # an application configured a tracer provider (it stays, see below)
_look_again_at = 0.0


def enabled() -> bool:
    """Whether spans are made: an application configured a tracer provider."""
    return _provider_seen or (monotonic() >= _look_again_at and _provider_configured())


def _provider_configured() -> bool:
    """Whether an application has configured a tracer provider. The API allows one per
    process, so once seen it stays; until then the API's getter reads the environment on
    every call (a microsecond: a good share of what a single-item add on SQLite spends in
    Python), so it is asked at most once a second."""
    global _provider_seen, _look_again_at
    if _trace is None:
        return False
    _provider_seen = not isinstance(_trace.get_tracer_provider(), _NO_OP_PROVIDERS)
    _look_again_at = monotonic() + 1.0
    return _provider_seen


def look_again() -> None:
    """Look for a tracer provider at the next span rather than within a second: for an
    application that configures one after its first adds and wants the next traced."""
    global _look_again_at
    _look_again_at = 0.0


def _link(value: str) -> Any:
    """A span link to a stored ``traceparent``; None when it does not parse (it was written
    by us, but the books outlive versions: a bad one must not fail a flush)."""
    assert _trace is not None
    try:
        version, trace_id, span_id, flags = value.split("-")
        # positional, and the flags of a sampled span made once: a flush makes up to
        # MAX_LINKS of these, each a third of the cost of the link in the SDK
        context = _trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            True,
            _SAMPLED if flags == "01" else _trace.TraceFlags(int(flags, 16)),
        )
    except ValueError:
        return None
    return _trace.Link(context) if version == "00" and context.is_valid else None


class _Off:
    """What `span` gives when tracing is off: a block that yields None and costs nothing."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_OFF = _Off()


def span(
    name: str, attributes: Mapping[str, Any], links: Iterable[str | None] = ()
) -> AbstractContextManager[Any]:
    """A span named `name`, current inside the block, with `attributes` and links to the
    distinct ``traceparent`` strings among `links` (at most `MAX_LINKS`, first seen first).
    An exception leaving the block is recorded on the span, which is marked an error.
    The block gets the span (to add attributes known only at the end), or None when tracing
    is off."""
    # no provider configured: the API's default would make spans that record nothing, yet
    # cost microseconds - a good share of a single-item add on SQLite
    if not enabled():
        return _OFF
    made = []
    for value in dict.fromkeys(links):  # distinct, in order
        link = None if value is None else _link(value)
        if link is not None:
            made.append(link)
            if len(made) == MAX_LINKS:
                break
    return _tracer.start_as_current_span(name, attributes=attributes, links=made)


def around(
    name: str,
    work: Callable[[str | None], T],
    attributes: Callable[[T], Mapping[str, Any]],
) -> T:
    """Run `work` in a span named `name` (tracing must be `enabled`), giving it the span's
    W3C ``traceparent`` to store with what it writes - None when the span is not sampled, so
    not worth linking to. The span gets `attributes` of the result at its end, or records
    the exception that left `work` and is marked an error. Unlike `span`, it is not made
    current: `work` makes no spans of its own, and the switch of context would cost a third
    of the span, which costs about as much as a single-item add on SQLite."""
    assert _trace is not None
    current = _tracer.start_span(name)
    context = current.get_span_context()
    parent = (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        if context.trace_flags.sampled
        else None
    )
    try:
        result = work(parent)
    except BaseException as exc:
        current.record_exception(exc)
        current.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        current.end()
        raise
    current.set_attributes(attributes(result))
    current.end()
    return result


def record_outcome(
    current: Any, outcome: str, raised: BaseException | None, **attributes: Any
) -> None:
    """Note on a span yielded by `span` the outcome of the work it covers
    (``batchyard.outcome``) and more `attributes`; an exception the work caught and
    recorded (a failed handler) is recorded on the span too, which is marked an error."""
    if current is None or not current.is_recording():
        return
    current.set_attributes({"batchyard.outcome": outcome, **attributes})
    if raised is not None:
        assert _trace is not None
        current.record_exception(raised)
        current.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(raised).__name__}"))


def traced(name: str, run: Callable[[Any], None]) -> Callable[[Any], None]:
    """A task kind's `run` (given one task, or a list of tasks run together) in a span named
    `name`, with the job id of the task's payload, its key and attempt, and how many tasks
    ran together. An exception it raises is recorded on the span; what it catches and
    records in its own books (a handler's failure) is not."""

    def traced_run(tasks: Any) -> None:
        first = tasks[0] if isinstance(tasks, list) else tasks
        attributes = {
            "batchyard.job_id": first.payload.get("job_id"),
            "batchyard.task_key": first.key,
            "batchyard.attempt": first.attempts,
            "batchyard.task_count": len(tasks) if isinstance(tasks, list) else 1,
        }
        with span(name, {k: v for k, v in attributes.items() if v is not None}):
            run(tasks)

    return traced_run
