"""SQLite under real faults: every driver error reaches the caller as a StoreError of its
kind, naming the file, with the driver's error as its cause - and nothing accepted is lost."""

from __future__ import annotations

import sqlite3

import pytest

from batchyard import (
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
    Yard,
)
from batchyard.store import open_store
from tests.faults.disks import grow, not_a_database, read_only_view, small_disk

# room for the schema and its first write-ahead log, and little more
DISK_KB = 768


def items(first: int, count: int) -> list[str]:
    return [f"{n:06d}:" + "x" * 400 for n in range(first, first + count)]


def test_a_full_disk_refuses_adds_as_store_full_and_keeps_what_was_accepted(tmp_path):
    delivered: list[str] = []
    with small_disk(tmp_path / "disk", DISK_KB) as disk:
        path = disk / "yard.db"
        yard = Yard(f"sqlite:///{path}")
        yard.handler("record")(lambda batch, ctx: delivered.extend(batch))
        accepted: list[str] = []
        with pytest.raises(StoreFull) as raised:
            for _ in range(10_000):  # bounded: the disk is full long before
                more = items(len(accepted), 20)
                yard.add_items("ev", more, max_batch_size=100_000, on_flush="record")
                accepted += more
        assert accepted, "the disk was full before the first add"
        assert str(path) in str(raised.value) and raised.value.transient
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        # SQLite undid the failed transaction itself: the next add meets the same full disk,
        # not a connection left in a broken transaction
        with pytest.raises(StoreFull):
            yard.add_items(
                "ev", items(len(accepted), 20), max_batch_size=100_000, on_flush="record"
            )

        grow(disk, DISK_KB * 4)  # an operator frees space
        more = items(len(accepted), 20)
        yard.add_items("ev", more, max_batch_size=100_000, on_flush="record")
        accepted += more
        yard.flush("ev")
        yard.run_worker(wait=False)
        yard.close()
    assert delivered == accepted  # every accepted item, once, in order; nothing refused


def test_a_read_only_file_system_gives_store_read_only(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    open_store(f"sqlite:///{folder}/yard.db").close()  # a closed WAL database: no -shm
    with read_only_view(folder, tmp_path / "view") as view:
        store = open_store(f"sqlite:///{view}/yard.db", migrate=False)
        with pytest.raises(StoreReadOnly, match=f"{view}/yard.db"):
            store.schema_version()  # a WAL database needs its -shm file even to be read
        store.close()


def test_writes_to_a_store_on_a_read_only_file_system_give_store_read_only(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    writer = open_store(f"sqlite:///{folder}/yard.db")  # open: its -shm file exists
    writer.schema_version()
    with read_only_view(folder, tmp_path / "view") as view:
        store = open_store(f"sqlite:///{view}/yard.db", migrate=False)
        assert store.schema_version() == store.latest_version()  # reads still work
        with pytest.raises(StoreReadOnly, match=f"{view}/yard.db") as raised:
            store.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('a')", {})
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StoreReadOnly), store.transaction() as tx:
            tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('a')")
        store.close()
        # SQLite keeps a closed connection's files open while another connection of the
        # process holds the same file: close both before the view is unmounted
        writer.close()


def test_a_file_that_is_not_a_database_gives_store_corrupt(tmp_path):
    path = not_a_database(tmp_path / "yard.db")
    with pytest.raises(StoreCorrupt, match=str(path)) as raised:
        open_store(f"sqlite:///{path}")
    assert not raised.value.transient
    assert isinstance(raised.value.__cause__, sqlite3.DatabaseError)


def test_a_store_that_must_exist_is_not_created(tmp_path):
    path = tmp_path / "mistyped.db"
    store = open_store(f"sqlite:///{path}", migrate=False, create=False)
    with pytest.raises(StoreError, match=f"no SQLite database at {path}"):
        store.schema_version()
    assert not path.exists()
    store.close()


def test_a_failing_statement_in_a_transaction_is_a_store_error_and_rolls_back(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/yard.db")
    insert = "INSERT INTO batchyard_batch_bases (base_id) VALUES (:base)"
    with pytest.raises(StoreError, match="UNIQUE") as raised, store.transaction() as tx:
        tx.execute(insert, {"base": "a"})
        tx.execute(insert, {"base": "a"})
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    store.execute(insert, {"base": "b"})  # the connection is free again
    with store.transaction(write=False) as tx:
        assert [r["base_id"] for r in tx.all("SELECT base_id FROM batchyard_batch_bases")] == ["b"]
    store.close()
