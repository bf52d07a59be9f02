"""Tracing tests: one SDK tracer provider for the session, exporting to memory.

OpenTelemetry allows one global tracer provider per process, so it is set once; its sampler
is a switch that the `spans` fixture turns on for its test only. Elsewhere the spans are
dropped (not sampled), and an add then stores no trace context, as with tracing off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link

from batchyard import tracing


class Switch(Sampler):
    """Samples every span while on, none while off."""

    on = False

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if self.on:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "switch"


_SWITCH = Switch()
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _provider() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=_SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        tracing.look_again()  # adds of earlier tests may have looked less than 1 s ago


class Spans:
    """The spans finished during a test."""

    def all(self, name: str | None = None) -> Sequence[ReadableSpan]:
        return [s for s in _EXPORTER.get_finished_spans() if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [found] = self.all(name)
        return found

    def ancestors(self, span: ReadableSpan) -> list[ReadableSpan]:
        """The finished spans above `span`, its parent first."""
        by_id = {s.context.span_id: s for s in self.all()}
        found = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            found.append(span)
        return found


@pytest.fixture
def spans(_provider: None) -> Iterator[Spans]:
    """Tracing on for this test; what it finished."""
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield Spans()
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


def traceparent(span: ReadableSpan | Link) -> str:
    """The W3C traceparent of a finished span, or of a link's span."""
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
