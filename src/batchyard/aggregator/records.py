"""Aggregation's records: an aggregator's configuration, a run's result, its status, a
parked event; and how a key is written in the totals table."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchyard.folds import Fold

RUN_TASK = "aggregator.run"


@dataclass(frozen=True)
class AggregatorConfig:
    name: str
    stream: str
    key: Callable[[dict[str, Any]], Any]
    fold: Fold
    apply: str | None
    page_size: int
    max_keys: int
    every: float | None
    lease: float


@dataclass(frozen=True)
class AggregatorRun:
    """What one `run_aggregator` call did."""

    name: str
    events: int
    keys: int
    applies: int
    parked: int
    caught_up: bool
    skipped: bool = False  # another runner held the aggregator


@dataclass(frozen=True)
class AggregatorStatus:
    name: str
    stream: str
    cursor: tuple[int, int]
    lag_events: int
    lag_seconds: float
    events_folded: int
    last_run_at: datetime | None
    last_error: str | None
    parked: int
    running: bool


@dataclass(frozen=True)
class ParkedEvent:
    event_id: int
    position: int
    error: str
    event: dict[str, Any]
    parked_at: datetime


def key_text(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key, separators=(",", ":"))
