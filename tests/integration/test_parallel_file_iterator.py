"""Parallel iterator jobs over files on both stores: NDJSON and CSV files cut into byte
ranges at record starts, every record in exactly one slice whatever the bytes at the cuts
(newlines, blank lines, CRLF, no last newline, quoted newlines in CSV), work stealing at a
record start, the whole job's pause, resume and cancel, and a restart from the slices'
cursors."""

from __future__ import annotations

import csv
import itertools
import random

import orjson
import pytest

from batchyard.sources import csv_file, ndjson_file

LINES = 20_000


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock)
    yard.calls = []
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE file_sink (n INTEGER PRIMARY KEY)")  # a second time fails

    @yard.handler("collect")
    def collect(items, ctx):
        yard.calls.append((ctx.slice, ctx.page, [item["n"] for item in items]))

    @yard.handler("sink")
    def sink(items, ctx):
        ctx.tx.executemany("INSERT INTO file_sink (n) VALUES (:n)", items)
        yard.calls.append((ctx.slice, ctx.page, [item["n"] for item in items]))

    return yard


def uneven_ndjson(path, count, seed=7):
    """`count` records of uneven length, a blank line and a CRLF here and there."""
    rnd = random.Random(seed)
    with path.open("wb") as out:
        for n in range(count):
            pad = "x" * rnd.choice([0, 1, 3, 40, 700])
            out.write(orjson.dumps({"n": n, "pad": pad}))
            out.write(rnd.choice([b"\n"] * 8 + [b"\r\n", b"\n\n"]))
    return path


def start(yard, source, job="f", **options):
    options = {
        "batch_size": 100,
        "delay_between_batches": 0,
        "parallelism": 4,
        "process_batch": "collect",
        **options,
    }
    return yard.start_iterator(job, get_next_batch=source, **options)


def delivered(yard):
    return [n for *_, numbers in yard.calls for n in numbers]


def by_slice(yard):
    """What each slice delivered, its pages in page order."""
    slices: dict[int, list[int]] = {}
    for number, _, numbers in sorted(yard.calls, key=lambda call: (call[0], call[1])):
        slices.setdefault(number, []).extend(numbers)
    return slices


def test_every_line_once_and_in_order_within_each_slice(yard, tmp_path):
    path = uneven_ndjson(tmp_path / "big.ndjson", LINES)
    start(yard, ndjson_file(yard, "big", path), process_batch="sink", transactional=True)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("f")
    assert status.status == "completed"
    assert status.processed == status.total == LINES
    assert sum(s.total for s in status.slices) == LINES and all(s.done for s in status.slices)
    assert sorted(delivered(yard)) == list(range(LINES))
    with yard.store.transaction(write=False) as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM file_sink")["n"] == LINES
    for numbers in by_slice(yard).values():
        assert numbers == sorted(numbers)
    assert all(s.cursor["offset"] == s.cursor["end"] for s in status.slices)
    assert max(s.cursor["end"] for s in status.slices) == path.stat().st_size


def read_all(source, cursor, size=3):
    """Every record of one range, page by page through the source itself."""
    items = []
    while True:
        page = source(cursor, size)
        items += page.items
        cursor = page.cursor
        if page.done:
            return items


AWKWARD = [
    b'{"n": 0}\n{"n": 1}\n\n\n{"n": 2}\r\n{"n": 3}\n\n{"n": 4}',  # no last newline
    b'\n\n{"n": 0}\r\n\r\n{"n": 1}\n{"n": 2, "long": "' + b"y" * 90 + b'"}\n{"n": 3}\n',
    b'{"n": 0}\n',
    b'{"n": 0}\n{"n": 1}',
    b"\n\n\n",
    b"",
]


@pytest.mark.parametrize("content", AWKWARD, ids=range(len(AWKWARD)))
def test_whatever_bytes_a_cut_falls_on_each_record_is_in_one_range(yard, tmp_path, content):
    """Cuts into 1 to 9 parts of files whose cuts fall on newlines, on the byte after one,
    inside CRLFs, on blank lines and past the last record - and cuts of every range again,
    as a slice that is asked to split cuts what it has left."""
    path = tmp_path / "awkward.ndjson"
    path.write_bytes(content)
    source = yard.runtime.handlers.get(ndjson_file(yard, "awkward", path))
    whole = read_all(source, None)
    for parts in range(1, 10):
        cuts = source.slice(None, parts)
        assert len(cuts) <= min(parts, len(whole))
        assert [count for _, count in cuts] == [len(read_all(source, c)) for c, _ in cuts]
        assert [item for cursor, _ in cuts for item in read_all(source, cursor)] == whole
        for (cursor, _), (after, _) in itertools.pairwise(cuts):
            assert cursor["end"] == after["offset"] and content[after["offset"] - 1] == ord("\n")
        for cursor, _ in cuts:  # a range cut again holds the same records
            again = source.slice(cursor, parts)
            assert again[0][0]["offset"] == cursor["offset"]
            assert [i for piece, _ in again for i in read_all(source, piece)] == read_all(
                source, cursor
            )


@pytest.mark.parametrize("content", AWKWARD[:4], ids=range(4))
def test_a_file_smaller_than_the_parallelism_runs_a_slice_per_record(yard, tmp_path, content):
    path = tmp_path / "small.ndjson"
    path.write_bytes(content)
    start(yard, ndjson_file(yard, "small", path), parallelism=8)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("f")
    records = content.count(b'{"n"')
    assert status.status == "completed" and status.processed == status.total == records
    assert sorted(delivered(yard)) == list(range(records))
    assert 1 <= len(status.slices) <= records


def test_an_empty_file_completes_at_once(yard, tmp_path):
    path = tmp_path / "blank.ndjson"
    path.write_bytes(b"\n\r\n\n")
    start(yard, ndjson_file(yard, "blank", path))
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("f")
    assert status.status == "completed" and status.total == 0 and status.slices == ()


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.DictWriter(out, fieldnames=["n", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_quoted_newlines_never_break_a_slice_and_every_slice_has_the_header(yard, tmp_path):
    """Long quoted fields full of newlines, so that most even byte offsets fall inside one."""
    rows = [
        {"n": str(n), "text": "".join(f'line {k}\n"{k}", ' for k in range(n % 40))}
        for n in range(2_000)
    ]
    path = write_csv(tmp_path / "quoted.csv", rows)
    source = yard.runtime.handlers.get(csv_file(yard, "quoted", path))
    for parts in (2, 3, 7):  # every cut at a record start, none inside a field
        cuts = source.slice(None, parts)
        assert [i for cursor, _ in cuts for i in read_all(source, cursor, 500)] == rows
    start(yard, "quoted")
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("f")
    assert status.status == "completed" and status.processed == status.total == 2_000
    assert sorted(int(n) for n in delivered(yard)) == list(range(2_000))
    assert all(s.cursor["header"] == ["n", "text"] for s in status.slices)


def test_a_bad_csv_row_in_a_slice_names_its_line_in_the_file(yard, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("n,text\n" + "".join(f'{n},"a\nb"\n' for n in range(300)) + "7,8,9\n")
    start(yard, csv_file(yard, "bad", path), max_retries=0)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("f")
    assert status.status == "failed"
    assert "line 602: 3 fields where the header has 2" in status.last_error


def test_a_slice_asked_to_split_cuts_what_it_has_left_at_a_line_start(yard, clock, tmp_path):
    """Slice 0 holds thousands of short lines, the others a few long ones: they run out
    first and ask it to split, and it cuts its remaining bytes at line starts (its step is
    held back until they have, so the test does not hang on which runs first)."""
    path = tmp_path / "skewed.ndjson"
    with path.open("wb") as out:
        for n in range(3_000):
            out.write(orjson.dumps({"n": n}) + b"\n")
        for n in range(3_000, 3_012):
            out.write(orjson.dumps({"n": n, "pad": "z" * 8_000}) + b"\n")
    content = path.read_bytes()
    start(yard, ndjson_file(yard, "skewed", path), batch_size=50)
    tasks, steps = yard.runtime.tasks, yard._iterators.steps
    [cut] = tasks.claim("w", 1, lease=30, now=clock.time())
    steps.run_step(cut)
    held = []
    while True:  # the other slices run out while slice 0's step waits
        claimed = tasks.claim("w", 8, lease=30, now=clock.time())
        held += [task for task in claimed if task.payload["slice"] == 0]
        others = [task for task in claimed if task.payload["slice"] != 0]
        if not others:
            break
        for task in others:
            steps.run_step(task)
    [first] = held
    assert [s.done for s in yard.get_iterator_status("f").slices] == [False, True, True, True]
    steps.run_step(first)  # asked to split by each: it does so before its first page
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("f")
    assert status.status == "completed" and sorted(delivered(yard)) == list(range(3_012))
    assert status.last_error is None  # no split failed (two at once took the same numbers)
    assert len(status.slices) > 4 and status.slices[0].total < 3_000  # slice 0 gave work away
    stolen = [s for s in status.slices if s.slice >= 4]
    for part in stolen:  # each stolen range starts at a line start
        assert content[part.cursor["end"] - 1] == ord("\n")
        numbers = by_slice(yard)[part.slice]
        offset = content.index(orjson.dumps({"n": numbers[0]}))
        assert offset > 0 and content[offset - 1] == ord("\n")
    for numbers in by_slice(yard).values():
        assert numbers == sorted(numbers)


def test_pause_resume_and_cancel_act_on_every_slice(yard, clock, tmp_path):
    path = uneven_ndjson(tmp_path / "steer.ndjson", 4_000)
    start(yard, ndjson_file(yard, "steer", path), delay_between_batches=5.0)
    yard.run_worker(wait=False)  # the cut, then one page of each slice
    assert [s.batches for s in yard.get_iterator_status("f").slices] == [1, 1, 1, 1]
    yard.pause_iterator("f")
    clock.advance(10)
    yard.run_worker(wait=False)
    paused = yard.get_iterator_status("f")
    assert paused.status == "paused" and paused.processed == 400  # no slice moved
    yard.resume_iterator("f")
    yard.run_worker(wait=False)
    assert [s.batches for s in yard.get_iterator_status("f").slices] == [2, 2, 2, 2]
    yard.cancel_iterator("f")
    clock.advance(10)
    yard.run_worker(wait=False)
    cancelled = yard.get_iterator_status("f")
    assert cancelled.status == "cancelled" and cancelled.processed == 800
    assert len(delivered(yard)) == 800


def test_a_restart_goes_on_from_each_slices_cursor(yard, make_yard, clock, tmp_path):
    """A worker dies with a page of every slice in flight; a new process (a new yard on the
    same store) rescues the steps once their leases run out and goes on from each slice's
    cursor: every line once into the sink."""
    path = uneven_ndjson(tmp_path / "restart.ndjson", 4_000)
    source = ndjson_file(yard, "restart", path)
    start(yard, source, process_batch="sink", transactional=True, delay_between_batches=5.0)
    tasks = yard.runtime.tasks
    [cut] = tasks.claim("first", 1, lease=30, now=clock.time())
    yard._iterators.steps.run_step(cut)
    yard.run_worker(wait=False)  # a page of each slice; the next ones are 5 s away
    cursors = {s.slice: s.cursor["offset"] for s in yard.get_iterator_status("f").slices}
    assert len(cursors) == 4 and len(delivered(yard)) == 400
    clock.advance(5)
    in_flight = tasks.claim("dying", 4, lease=30, now=clock.time())
    assert len(in_flight) == 4  # and never finished: the process is gone
    restarted = make_yard(clock=clock)
    restarted.calls = yard.calls

    @restarted.handler("sink")
    def sink(items, ctx):
        ctx.tx.executemany("INSERT INTO file_sink (n) VALUES (:n)", items)
        yard.calls.append((ctx.slice, ctx.page, [item["n"] for item in items]))

    ndjson_file(restarted, "restart", path)
    clock.advance(31)
    while restarted.get_iterator_status("f").status == "running":
        restarted.run_worker(wait=False)
        clock.advance(5)
    status = restarted.get_iterator_status("f")
    assert status.status == "completed" and status.processed == 4_000
    content = path.read_bytes()
    for number, pages in by_slice_pages(yard).items():
        if number in cursors:  # each slice began again at its cursor
            assert content.index(b'{"n":%d,' % pages[1][0]) == cursors[number]
    assert sorted(delivered(yard)) == list(range(4_000))
    with restarted.store.transaction(write=False) as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM file_sink")["n"] == 4_000


def by_slice_pages(yard):
    """Each slice's pages, in page order, as lists of record numbers."""
    slices: dict[int, list[list[int]]] = {}
    for number, _, numbers in sorted(yard.calls, key=lambda call: (call[0], call[1])):
        slices.setdefault(number, []).append(numbers)
    return slices
