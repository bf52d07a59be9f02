"""Exports on both stores: the three formats, hostile CSV cells, and one snapshot."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from batchyard import InvalidInput
from batchyard.bulk.things import upsert_things


def put(yard, items):
    job_id = yard.create_batch_job("import-things", items)
    yard.run_worker(wait=False)
    assert yard.get_batch_job(job_id).status == "completed"


def export(yard, ns, format):
    return b"".join(yard.export_to_format(ns, format))


HOSTILE = ['=HYPERLINK("http://evil")', "+1+2", "-2+3", "@SUM(A1)", "\tindent", "\rret"]


def test_csv_neutralises_formula_cells_and_flattens_data(yard):
    put(
        yard,
        [
            {
                "ns": "=h",
                "id": f"{cell}{n}",
                "type": cell,
                "visibility": cell,
                "content": cell,
                "data": {"cell": cell, "n": -n, "nested": {"a": [1, 2]}, "flag": True},
            }
            for n, cell in enumerate(HOSTILE)
        ],
    )
    rows = list(csv.DictReader(io.StringIO(export(yard, "=h", "csv").decode())))
    assert list(rows[0]) == [
        "ns",
        "id",
        "type",
        "content",
        "visibility",
        "createdAt",
        "updatedAt",
        "data.cell",
        "data.flag",
        "data.n",
        "data.nested",
    ]
    by_id = sorted((f"{cell}{n}", cell, n) for n, cell in enumerate(HOSTILE))
    for row, (id, cell, n) in zip(rows, by_id, strict=True):
        assert row["ns"] == "'=h" and row["id"] == "'" + id and row["visibility"] == "'" + cell
        assert row["type"] == row["content"] == row["data.cell"] == "'" + cell
        assert row["data.nested"] == '{"a":[1,2]}' and row["data.flag"] == "true"
        assert row["data.n"] == str(-n)  # a number, not text: no quote


def test_json_and_ndjson_hold_every_thing_in_id_order(yard):
    put(yard, [{"ns": "n", "id": f"t{n:03}", "data": {"n": n, "s": 'é"\n'}} for n in range(250)])
    as_json = orjson.loads(export(yard, "n", "json"))
    lines = export(yard, "n", "ndjson").decode().splitlines()
    as_ndjson = [orjson.loads(line) for line in lines]
    assert as_json == as_ndjson
    assert [t["id"] for t in as_json] == [f"t{n:03}" for n in range(250)]
    assert as_json[7]["data"] == {"n": 7, "s": 'é"\n'}
    assert set(as_json[0]) == {
        "ns",
        "id",
        "type",
        "data",
        "content",
        "visibility",
        "createdAt",
        "updatedAt",
    }


def test_an_empty_namespace_is_valid_in_every_format(yard):
    assert orjson.loads(export(yard, "none", "json")) == []
    assert export(yard, "none", "ndjson") == b""
    assert export(yard, "none", "csv").decode().splitlines() == [
        "ns,id,type,content,visibility,createdAt,updatedAt"
    ]


def test_an_export_reads_one_snapshot_while_writes_go_on(yard):
    rows = [
        {
            "ns": "s",
            "id": f"t{n:05}",
            "type": None,
            "content": "x" * 200,
            "visibility": None,
            "data": orjson.dumps({"v": 1}).decode(),
        }
        for n in range(2_000)
    ]
    with yard.store.transaction() as tx:
        upsert_things(tx, rows)
    stream = yard.export_to_format("s", "ndjson")
    first = next(stream)  # the snapshot is taken: now change the namespace under it
    with yard.store.transaction() as tx:
        upsert_things(
            tx, [{**rows[-1], "data": '{"v": 2}'}, {**rows[0], "id": "zzzzz", "data": '{"v": 3}'}]
        )
        tx.execute("DELETE FROM batchyard_things WHERE ns = 's' AND id = 't01000'")
    things = [orjson.loads(line) for line in (first + b"".join(stream)).splitlines()]
    assert len(things) == 2_000 and things[1000]["id"] == "t01000"
    assert {t["data"]["v"] for t in things} == {1}


def test_bad_arguments_are_refused_before_reading(yard):
    with pytest.raises(InvalidInput, match="format must be one of json, csv, ndjson"):
        yard.export_to_format("n", "xml")
    with pytest.raises(InvalidInput, match="ns must be a non-empty string"):
        yard.export_to_format("", "json")
