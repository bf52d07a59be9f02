"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, valid
by the schema or not, the answer is never a 5xx and matches the schema."""

from __future__ import annotations

import contextlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from batchyard import Page, folds
from batchyard.errors import MissingExtra
from batchyard.http import create_app
from batchyard.http.auth import ApiTokens

TOKEN = "fuzz-token-0123456789"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/yard.db"


@pytest.fixture
def api_schema(make_yard):
    yard = make_yard()
    yard.handler("collect")(lambda items, ctx: None)
    # something in every list, so that full answers are checked against the schema too
    yard.handler("numbers")(lambda cursor, size: Page([1], cursor=1, done=bool(cursor)))
    yard.handler("total")(lambda items, ctx: None)
    yard.register_aggregator("clicks", stream="clicks", key="user", fold=folds.count())
    yard.append_events("clicks", [{"user": "ann"}, {"no_user": True}])
    yard.run_aggregator("clicks")  # one total, one parked event
    yard.start_iterator("walk", batch_size=1, get_next_batch="numbers", process_batch="total")
    yard.add_items("ev", [1, 2], max_batch_size=5, on_flush="collect")
    yard.register_batcher("taps", key="user", max_batch_size=1, on_flush="collect")
    yard.add("taps", [{"user": "ann"}, {"user": "bob"}])
    yard.run_worker(wait=False)  # the batcher's history holds a flush
    # load the model now: a cold first load can outlast one fuzzed request's timeout
    # (without the extra, /search answers 501, which the schema documents)
    with contextlib.suppress(MissingExtra):
        yard.embedder.encode(["warm up"])
    app = create_app(yard, worker=False, tokens=ApiTokens([TOKEN]))
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTHORIZED)


# `schema.parametrize()` with a lazily loaded schema does not run on this pytest, so each
# operation's strategy is driven with hypothesis' `given` directly
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_answers_what_its_schema_says(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # every route family: batches, iterators, aggregators, events, jobs, search, probes
    assert len(operations) >= 37
    paths = {operation.path for operation in operations}
    assert {"/batches", "/iterators", "/aggregators", "/streams/{stream}/events"} <= paths

    fuzzed = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        # derandomize: the same cases on every run, so a red CI names a change, not a dice
        # roll (turn it off locally to search wider)
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def answers_within_the_schema(case):
            case.call_and_validate(
                headers=AUTHORIZED, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            answers_within_the_schema()
        except Unsatisfiable:
            # negative mode only: the operation takes nothing that can be invalid (a string
            # path parameter, say)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed += 1
    assert fuzzed >= (len(operations) if mode is GenerationMode.POSITIVE else 2)
