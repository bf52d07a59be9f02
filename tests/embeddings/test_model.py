"""generate-embeddings jobs and search with the real model, on both stores."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.embeddings.conftest import embed, put_things, stored_vectors

pytestmark = pytest.mark.slow  # the model takes a few seconds to load, once

PETS = ["a kitten lies on a rug", "stock markets fell sharply", "the recipe needs two eggs"]


@pytest.fixture
def yard(make_yard, counting):
    return make_yard(embedder=counting)


def pets(ns="pets"):
    return [{"ns": ns, "id": f"t{n}", "content": text} for n, text in enumerate(PETS)]


def test_the_nearest_thing_to_a_cat_on_a_mat_is_the_kitten(yard):
    put_things(yard, pets())
    job = embed(yard, ns="pets")
    assert (job.status, job.processed, job.failed) == ("completed", 3, 0)

    hits = yard.search("pets", "a cat sits on the mat", k=3)
    assert hits[0].thing["content"] == "a kitten lies on a rug"
    assert len(hits) == 3 and hits[0].score > hits[1].score >= hits[2].score
    assert hits[0].score > 0.4 and hits[1].score < 0.2  # a clear winner, not a coin toss
    assert [hit.id for hit in yard.search("pets", "the recipe needs two eggs", k=1)] == ["t2"]
    assert yard.search("elsewhere", "a cat", k=3) == []


def test_stored_vectors_are_unit_length_and_deterministic(yard, model):
    put_things(yard, pets())
    embed(yard, ns="pets")
    vectors = stored_vectors(yard, "pets")
    assert sorted(vectors) == ["t0", "t1", "t2"]
    for n, text in enumerate(PETS):
        name, digest, dimension, vector = vectors[f"t{n}"]
        assert (name, dimension, vector.shape) == ("all-MiniLM-L6-v2", 384, (384,))
        assert digest == hashlib.sha256(text.encode()).hexdigest()
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        # the same text alone, in another batch, gives the same vector
        np.testing.assert_allclose(model.encode([text])[0], vector, atol=1e-5)
    again = model.encode(PETS)
    np.testing.assert_array_equal(again, model.encode(PETS))


def test_unchanged_text_is_not_encoded_again(yard, counting):
    put_things(yard, pets())
    embed(yard, ns="pets")
    assert sorted(text for call in counting.calls for text in call) == sorted(PETS)

    counting.calls.clear()
    job = embed(yard, ns="pets")
    assert (job.status, job.processed, counting.calls) == ("completed", 3, [])

    put_things(yard, [{"ns": "pets", "id": "t1", "content": "bond yields rose"}])
    job = embed(yard, ns="pets")
    assert (job.status, job.processed, counting.calls) == ("completed", 3, [["bond yields rose"]])
    assert yard.search("pets", "interest rates and bonds", k=1)[0].id == "t1"


def test_missing_things_and_empty_text_fail_with_the_reason_and_the_rest_is_embedded(yard):
    put_things(
        yard,
        [
            {"ns": "n", "id": "ok", "content": "a kitten lies on a rug"},
            {"ns": "n", "id": "empty", "content": ""},
            {"ns": "n", "id": "blank", "content": "  \n "},
            {"ns": "n", "id": "none", "data": {"title": "no content here"}},
        ],
    )
    job = embed(yard, *({"ns": "n", "id": id} for id in ("empty", "ok", "gone", "blank", "none")))
    assert (job.status, job.processed, job.failed) == ("failed", 1, 4)
    assert [(e.index, e.error) for e in job.errors] == [
        (0, "no text to embed: content empty or missing"),
        (2, "not found: n/gone"),
        (3, "no text to embed: content empty or missing"),
        (4, "no text to embed: content empty or missing"),
    ]
    assert sorted(stored_vectors(yard, "n")) == ["ok"]


def test_fields_choose_the_text(yard, model):
    put_things(
        yard,
        [
            {
                "ns": "docs",
                "id": "a",
                "content": "stock markets fell sharply",
                "data": {"title": "Kittens", "meta": {"lang": "en"}},
            },
            {"ns": "docs", "id": "b", "content": "the recipe needs two eggs"},
        ],
    )
    job = embed(yard, ns="docs", fields=["data.title", "content", "data.meta.lang"])
    assert (job.status, job.processed) == ("completed", 2)
    vectors = stored_vectors(yard, "docs")
    text = "Kittens\nstock markets fell sharply\nen"
    assert vectors["a"][1] == hashlib.sha256(text.encode()).hexdigest()
    np.testing.assert_allclose(vectors["a"][3], model.encode([text])[0], atol=1e-5)
    assert vectors["b"][1] == hashlib.sha256(b"the recipe needs two eggs").hexdigest()


def test_texts_are_encoded_in_batches_of_the_configured_size_longest_first(yard, counting):
    put_things(
        yard, [{"ns": "many", "id": f"t{n:03}", "content": f"thing number {n}"} for n in range(150)]
    )
    job = embed(yard, ns="many")
    # both chunks of 100 items in one group, their texts encoded 64 at a time longest first
    assert (job.processed, [len(call) for call in counting.calls]) == (150, [64, 64, 22])
    lengths = [len(text) for call in counting.calls for text in call]
    assert lengths == sorted(lengths, reverse=True)

    put_things(yard, [{"ns": "few", "id": f"t{n}", "content": f"item {n}"} for n in range(10)])
    counting.calls.clear()
    embed(yard, ns="few", batchSize=4)
    assert [len(call) for call in counting.calls] == [4, 4, 2]
    assert len(stored_vectors(yard, "many")) == 150
