"""open_store(url): the store for a URL's scheme, imported only when asked for."""

from __future__ import annotations

from batchyard.errors import ConfigError
from batchyard.store.base import Migration, Store, Tx

__all__ = ["Migration", "Store", "Tx", "open_store"]

DEFAULT_URL = "sqlite:///batchyard.db"


def open_store(url: str = DEFAULT_URL, *, migrate: bool = True, create: bool = True) -> Store:
    """Open the store for `url` (``sqlite:///path`` or ``postgresql://...``) and bring its
    schema up to date unless `migrate` is False. With `create` False a SQLite file that does
    not exist is a `StoreError` instead of a new database (a PostgreSQL database is never
    created)."""
    scheme = url.split(":", 1)[0].lower()
    store: Store
    if scheme == "sqlite":
        from batchyard.store.sqlite import SQLiteStore

        store = SQLiteStore(url, create=create)
    elif scheme in ("postgresql", "postgres"):
        from batchyard.store.postgres import PostgresStore

        store = PostgresStore(url)
    else:
        raise ConfigError(
            f"unknown store scheme {scheme!r} in {url!r}: use sqlite:///path or postgresql://..."
        )
    if migrate:
        store.migrate()
    return store
