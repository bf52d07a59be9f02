"""The fault fixtures: a PostgreSQL database reached through a proxy that can fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultyProxy


@pytest.fixture
def proxy(pg_database: str) -> Iterator[FaultyProxy]:
    """A proxy in front of a fresh migrated database; `proxy.url` reaches it through it."""
    faulty = FaultyProxy(pg_database)
    yield faulty
    faulty.close()
