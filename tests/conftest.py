"""Fixtures shared by every test: real stores, one per backend, the yards on them, a clock.

SQLite runs on a file under tmp_path (WAL and several connections are real). PostgreSQL runs
on the server named by BATCHYARD_TEST_POSTGRES (default: the local one); a template database
is migrated once per session and cloned per test. Where no server answers, PostgreSQL tests
skip with the reason - except under CI, where they fail.

- `store_url`: the URL of a fresh store, once per backend.
- `make_yard`: a factory of yards on that store (`make_yard(clock=clock, retry=...)`).
- `yard`: `make_yard()` - default options, the system clock. A module that needs more (a
  manual clock, a retry policy, its handlers) overrides `yard` by name, building on this
  one or on `make_yard`.
- `clock`: a `ManualClock` at `CLOCK_START`, moved only by the test's `advance`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import settings

from batchyard import ManualClock, Yard
from batchyard.store import open_store

PG_ADMIN_URL = os.environ.get(
    "BATCHYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgres"]

# No timed assertions: hypothesis fails an example that runs past its deadline (200 ms),
# which a busy machine makes happen to the fastest test.
settings.register_profile("batchyard", deadline=None)
settings.load_profile("batchyard")
CLOCK_START = 1_800_000_000.0  # 2027-01-15 08:00 UTC; no test depends on the date itself


def pg_url(database: str) -> str:
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


def pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        pg_admin("SELECT 1")
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"batchyard_tpl_{uuid.uuid4().hex[:10]}"
    pg_admin(f"CREATE DATABASE {name}")
    open_store(pg_url(name)).close()  # migrates
    yield name
    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; its URL."""
    name = f"batchyard_t_{uuid.uuid4().hex[:12]}"
    pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield pg_url(name)
    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """A URL of a fresh store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/yard.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def make_yard(store_url: str) -> Iterator[Callable[..., Yard]]:
    """Factory of yards on the test's store; all are closed at the end."""
    yards: list[Yard] = []

    def make(**options: object) -> Yard:
        yard = Yard(store_url, **options)  # type: ignore[arg-type]
        yards.append(yard)
        return yard

    yield make
    for yard in yards:
        yard.close()


@pytest.fixture
def yard(make_yard: Callable[..., Yard]) -> Yard:
    """A yard on the test's store: default options, the system clock, no handlers."""
    return make_yard()


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at CLOCK_START; time moves only when the test advances it."""
    return ManualClock(CLOCK_START)
