"""Ready-made sources: the keyset SQL source (rows sharing an order value are neither lost
nor repeated) and the NDJSON and CSV file sources (offset cursors, totals, bad lines)."""

from __future__ import annotations

import csv

import orjson
import pytest

from batchyard import InvalidInput
from batchyard.sources import csv_file, ndjson_file, sql_keyset


@pytest.fixture
def yard(yard):
    """The shared yard (tests/conftest.py), with this module's handler and source table."""
    yard.batches = []

    @yard.handler("collect")
    def collect(items, ctx):
        yard.batches.append([row["id"] for row in items])

    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE events_src (id INTEGER PRIMARY KEY, at REAL NOT NULL, body TEXT)")
        tx.execute("CREATE INDEX events_src_at ON events_src (at, id)")
    return yard


def fill(yard, at_of):
    with yard.store.transaction() as tx:
        tx.executemany(
            "INSERT INTO events_src (id, at, body) VALUES (:id, :at, 'x')",
            [{"id": n, "at": at_of(n)} for n in range(1, 10_001)],
        )


def run_job(yard, job):
    sql_keyset(
        yard,
        f"src-{job}",
        table="events_src",
        order_by="at",
        tie_breaker="id",
        columns=["id", "body"],
    )
    yard.start_iterator(
        job,
        batch_size=100,
        get_next_batch=f"src-{job}",
        process_batch="collect",
        delay_between_batches=0,
    )
    yard.run_worker(wait=False)
    return yard.get_iterator_status(job)


@pytest.mark.parametrize(
    "at_of",
    [lambda n: 1000.0, lambda n: float(n // 1000)],
    ids=["one-timestamp", "1000-per-second"],
)
def test_every_row_once_with_shared_order_values(yard, at_of):
    fill(yard, at_of)
    status = run_job(yard, "j")
    assert status.status == "completed" and status.processed == 10_000
    seen = [i for batch in yard.batches for i in batch]
    assert sorted(seen) == list(range(1, 10_001)) and len(seen) == 10_000
    assert all(len(b) <= 100 for b in yard.batches)
    assert seen == sorted(seen, key=lambda n: (at_of(n), n))  # cursor strictly increasing


def test_the_bound_stops_at_rows_present_at_start(yard):
    fill(yard, lambda n: float(n))

    @yard.handler("collect-and-insert")
    def collect_and_insert(items, ctx):
        yard.batches.append([row["id"] for row in items])
        with yard.store.transaction() as tx:  # rows keep arriving while the job runs
            tx.execute(
                "INSERT INTO events_src (id, at) VALUES (:id, :id)", {"id": 20_000 + ctx.page}
            )

    sql_keyset(yard, "src", table="events_src", order_by="at", tie_breaker="id")
    yard.start_iterator(
        "b",
        batch_size=1000,
        get_next_batch="src",
        process_batch="collect-and-insert",
        delay_between_batches=0,
    )
    yard.run_worker(wait=False)
    assert max(i for b in yard.batches for i in b) == 10_000


def test_identifiers_are_checked(yard):
    with pytest.raises(InvalidInput, match="table"):
        sql_keyset(yard, "bad", table="x; DROP TABLE y", order_by="at", tie_breaker="id")


# -- files ----------------------------------------------------------------------------------


def run_file_job(yard, source, job="f", batch_size=100, **options):
    yard.start_iterator(
        job,
        batch_size=batch_size,
        get_next_batch=source,
        process_batch="collect-items",
        delay_between_batches=0,
        **options,
    )
    yard.run_worker(wait=False)
    return yard.get_iterator_status(job)


@pytest.fixture
def file_yard(make_yard):
    yard = make_yard()
    yard.batches = []

    @yard.handler("collect-items")
    def collect(items, ctx):
        yard.batches.append(items)

    return yard


def test_ndjson_file_every_record_once_in_order_with_a_total(file_yard, tmp_path):
    path = tmp_path / "in.ndjson"
    lines = [
        orjson.dumps({"n": n}).decode() + ("\n\n" if n % 97 == 0 else "\n") for n in range(1_050)
    ]
    path.write_text("".join(lines))
    status = run_file_job(file_yard, ndjson_file(file_yard, "nd", path))
    assert status.status == "completed" and status.processed == 1_050 and status.total == 1_050
    assert [item["n"] for batch in file_yard.batches for item in batch] == list(range(1_050))
    assert all(len(batch) <= 100 for batch in file_yard.batches)


def test_csv_file_quoted_fields_bom_and_resume_from_the_offset(file_yard, tmp_path):
    path = tmp_path / "in.csv"
    rows = [{"id": str(n), "text": f'line one\nline "two", {n}'} for n in range(500)]
    with path.open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.DictWriter(out, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(rows)

    paused_once = []

    @file_yard.handler("pause-at-third")
    def pause_at_third(items, ctx):
        file_yard.batches.append(items)
        if ctx.page == 2 and not paused_once:
            paused_once.append(True)
            file_yard.pause_iterator(ctx.job_id)  # fences this batch: it is redone

    source = csv_file(file_yard, "csv", path)
    file_yard.start_iterator(
        "c",
        batch_size=64,
        get_next_batch=source,
        process_batch="pause-at-third",
        delay_between_batches=0,
    )
    file_yard.run_worker(wait=False)
    paused = file_yard.get_iterator_status("c")
    assert paused.status == "paused" and paused.processed == 128  # the third batch is fenced
    assert paused.cursor["offset"] > 0 and paused.total == 500
    file_yard.batches.clear()
    file_yard.resume_iterator("c")
    file_yard.run_worker(wait=False)
    assert file_yard.get_iterator_status("c").status == "completed"
    assert [item for batch in file_yard.batches for item in batch] == rows[128:]


def test_a_bad_line_fails_the_job_naming_the_line_and_keeps_the_checkpoint(file_yard, tmp_path):
    path = tmp_path / "bad.ndjson"
    lines = [orjson.dumps({"n": n}).decode() for n in range(300)]
    lines[156] = '{"n": 156,'  # line 157
    path.write_text("\n".join(lines) + "\n")
    status = run_file_job(file_yard, ndjson_file(file_yard, "nd", path), max_retries=0)
    assert status.status == "failed" and "line 157" in status.last_error
    assert status.processed == 100  # the page holding line 157 was not checkpointed


def test_a_csv_row_with_the_wrong_field_count_names_its_line(file_yard, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    status = run_file_job(file_yard, csv_file(file_yard, "csv", path), max_retries=0)
    assert status.status == "failed"
    assert "line 3: 3 fields where the header has 2" in status.last_error


def test_lines_appended_after_the_start_are_not_chased(file_yard, tmp_path):
    path = tmp_path / "grow.ndjson"
    path.write_text("".join(f'{{"n": {n}}}\n' for n in range(250)))

    @file_yard.handler("append")
    def append(items, ctx):
        file_yard.batches.append(items)
        with path.open("a") as out:
            out.write('{"n": -1}\n')

    file_yard.start_iterator(
        "g",
        batch_size=100,
        get_next_batch=ndjson_file(file_yard, "g", path),
        process_batch="append",
        delay_between_batches=0,
    )
    file_yard.run_worker(wait=False)
    seen = [item["n"] for batch in file_yard.batches for item in batch]
    assert seen == list(range(250))


def test_a_missing_file_is_a_clear_error(file_yard, tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        ndjson_file(file_yard, "nd", tmp_path / "nope.ndjson")
