"""An item is accepted only if it will be delivered exactly as given: integers past 64 bits,
lone surrogates (in values and keys), NaN and infinities are refused at the entrance, naming
the item and the path inside it - through add_items, the producer, events and bulk jobs, on
both stores. Without the rule, 2**64 came back a float and "\\ud800" made its flush fail."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings

from batchyard import InvalidInput
from tests.exact_values import json_like, points_at_a_problem, same, storable

BAD = [
    (
        [{"user": {"ids": [1, 2, 2**64]}}],
        "items[0].user.ids[2]: integer 18446744073709551616 is outside the 64-bit range",
        ("user", "ids", 2),
    ),
    ([1, {"v": "\ud800"}], "items[1].v: string is not valid UTF-8", ("v",)),
    (
        [{"a": [{"\udfff": 1}]}],
        'items[0].a[0]["\\udfff"]: object key is not valid UTF-8',
        ("a", 0, "\udfff"),
    ),
    ([1, 2, 3, -(2**63) - 1], "items[3]: integer -9223372036854775809", ()),
    ([10**100], "items[0]: integer 1" + "0" * 100, ()),
    ([{"x": [float("inf")]}], "items[0].x[0]: float inf is not JSON", ("x", 0)),
    ([{1: "a"}], "items[0]: object key 1 is not a string", ()),
]


@pytest.fixture
def yard(yard):
    """The shared yard (tests/conftest.py), with this module's handlers."""
    yard.delivered = {}

    @yard.handler("collect")
    def collect(items, ctx):
        yard.delivered[ctx.batch_id] = list(items)

    return yard


def delivered(yard, base):
    yard.run_worker(wait=False)
    return yard.delivered.pop(f"{base}::0")


@pytest.mark.parametrize(("items", "message", "path"), BAD)
def test_add_items_refuses_what_would_not_come_back_naming_index_and_path(
    yard, items, message, path
):
    add = {"max_batch_size": 10, "on_flush": "collect"}
    yard.add_items("ev", ["before"], **add)
    with pytest.raises(InvalidInput) as refused:
        yard.add_items("ev", items, **add)
    assert str(refused.value).startswith(message)
    assert refused.value.field == "items" and refused.value.index == len(items) - 1
    assert refused.value.path == path
    # nothing of the refused call was stored, nothing accepted before it was lost
    yard.flush("ev")
    assert delivered(yard, "ev") == ["before"]


@pytest.mark.parametrize(("items", "message", "path"), BAD)
def test_the_producer_refuses_them_at_add_and_keeps_what_it_accepted(yard, items, message, path):
    add = {"max_batch_size": 10, "on_flush": "collect"}
    with yard.producer() as producer:
        producer.add("ev", ["before"], **add)
        with pytest.raises(InvalidInput) as refused:
            producer.add("ev", items, **add)
        assert str(refused.value).startswith(message) and refused.value.path == path
        producer.add("ev", ["after"], **add)
    yard.flush("ev")
    assert delivered(yard, "ev") == ["before", "after"]


def test_the_64_bit_edges_are_delivered_as_integers(yard):
    edges = [2**64 - 1, -(2**63), 2**63, 2**53 + 1, -0.0, {"k\u2028é😀": "\x00"}]
    yard.add_items("ev", edges, max_batch_size=len(edges), on_flush="collect")
    assert all(map(same, edges, delivered(yard, "ev")))


def test_events_are_held_to_the_same_rule(yard):
    yard.append_events("s", [{"n": 1}])
    for event, message in [
        ({"n": 2**64}, "events[1].n: integer"),
        ({"n": "\ud800"}, "events[1].n: string is not valid UTF-8"),
    ]:
        with pytest.raises(InvalidInput, match=message.replace("[", r"\[")) as refused:
            yard.append_events("s", [{"n": 2}, event])
        assert refused.value.field == "events" and refused.value.index == 1
    from batchyard import folds

    yard.register_aggregator("total", stream="s", key=lambda e: "all", fold=folds.sum("n"))
    yard.run_aggregator("total")
    assert yard.get_totals("total", "all") == {"n": 1}


def test_a_bulk_job_item_that_would_not_come_back_fails_alone(yard):
    items = [{"text": "ok"}, {"text": "\ud800"}, {"text": 2**64}, {"text": "fine"}]
    yard.transform("same")(lambda item: item)
    job_id = yard.create_batch_job("transform-data", items, options={"transform": "same"})
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.processed, job.failed) == (2, 2)
    assert [(e.index, e.error.split(":")[0]) for e in job.errors] == [(1, "text"), (2, "text")]
    assert job.results == [{"text": "ok"}, {"text": "fine"}]


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [("input", {"ns": "\ud800"}, ("ns",)), ("options", {"transform": "same", "x": 2**64}, ("x",))],
)
def test_a_bulk_job_whose_input_or_options_would_not_come_back_is_refused(yard, field, value, path):
    yard.transform("same")(lambda item: item)
    arguments = {"options": {"transform": "same"}, field: value}
    with pytest.raises(InvalidInput, match=f"{field}.{path[0]}: ") as refused:
        yard.create_batch_job("transform-data", [{"a": 1}], **arguments)
    assert refused.value.field == field and refused.value.path == path
    assert yard.list_batch_jobs() == []


# -- any value: refused exactly when the rule says, else delivered equal ------------------


def check_round_trips(yard, add, flush, examples=60):
    bases = (f"b{n}" for n in itertools.count())

    @settings(max_examples=examples, deadline=None, database=None)
    @given(value=json_like)
    def round_trip(value):
        base = next(bases)
        try:
            add(base, [value])
        except InvalidInput as exc:
            assert not storable(value), f"refused {value!r}: {exc}"
            assert exc.index == 0 and points_at_a_problem(value, exc.path), str(exc)
            return
        assert storable(value), f"accepted {value!r}"
        flush()
        assert same(value, delivered(yard, base)[0])

    round_trip()


def test_any_value_through_add_items_is_refused_or_delivered_equal(yard):
    check_round_trips(
        yard,
        lambda base, items: yard.add_items(base, items, max_batch_size=1, on_flush="collect"),
        lambda: None,
    )


def test_any_value_through_the_producer_is_refused_or_delivered_equal(yard):
    with yard.producer() as producer:
        check_round_trips(
            yard,
            lambda base, items: producer.add(base, items, max_batch_size=1, on_flush="collect"),
            producer.flush,
        )
