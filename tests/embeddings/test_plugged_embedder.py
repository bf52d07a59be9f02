"""An embedder of the user's own (a letter histogram: crude, but a real model of its own
kind), job options, and the search's running top k across pages."""

from __future__ import annotations

import string

import numpy as np
import pytest

from batchyard import InvalidInput, RetryPolicy
from batchyard.bulk.search import search
from tests.embeddings.conftest import embed, put_things, stored_vectors


class Letters:
    name = "letters"
    dimension = 26

    def encode(self, texts):
        counts = np.array(
            [[text.lower().count(c) for c in string.ascii_lowercase] for text in texts],
            dtype=np.float64,
        )
        return counts  # not unit length: batchyard normalises what it stores and compares


@pytest.fixture
def yard(make_yard):
    return make_yard(embedder=Letters())


def words(n):
    # thing k is k letters "a" then letters "b": its direction turns from b to a with k
    return [{"ns": "w", "id": f"w{k:02}", "content": "a" * k + "b" * (n - k)} for k in range(n + 1)]


def test_a_plugged_embedder_stores_under_its_name_and_search_finds_by_it(yard, model):
    put_things(yard, words(20))
    job = embed(yard, ns="w", batchSize=7)
    assert (job.status, job.processed) == ("completed", 21)
    vectors = stored_vectors(yard, "w")
    assert {v[0] for v in vectors.values()} == {"letters"}
    assert all(abs(float(np.linalg.norm(v[3])) - 1.0) < 1e-6 for v in vectors.values())

    assert [hit.id for hit in yard.search("w", "aaaa", k=3)] == ["w20", "w19", "w18"]
    assert [hit.id for hit in yard.search("w", "bbbb", k=2)] == ["w00", "w01"]
    hit = yard.search("w", "ab", k=1)[0]
    assert hit.id == "w10" and hit.score == pytest.approx(1.0, abs=1e-6)

    yard.use_embedder(model)  # another model: none of its vectors are stored yet
    assert yard.embedder is model and yard.search("w", "aaaa") == []


@pytest.mark.parametrize("page_rows", [1, 2, 5, 4096])
def test_search_keeps_the_top_k_across_pages(yard, page_rows):
    put_things(yard, words(30))
    embed(yard, ns="w")
    hits = search(yard.store, yard.embedder, "w", "aaab", k=4, page_rows=page_rows)
    # exact answer: cos between (3, 1) and (k, 30 - k)
    cosine = {
        f"w{k:02}": (3 * k + (30 - k)) / np.hypot(3, 1) / np.hypot(k, 30 - k) for k in range(31)
    }
    expected = sorted(cosine, key=lambda id: -cosine[id])[:4]
    assert [hit.id for hit in hits] == expected
    for hit in hits:
        assert hit.score == pytest.approx(cosine[hit.id], abs=1e-5)


def test_bad_options_and_arguments_are_refused_before_anything_is_stored(yard):
    put_things(yard, words(2))
    for options, field in [
        ({"fields": []}, "options.fields"),
        ({"fields": "content"}, "options.fields"),
        ({"fields": ["data."]}, "options.fields"),
        ({"fields": ["colour"]}, "options.fields"),
        ({"batchSize": 0}, "options.batchSize"),
        ({"batchSize": True}, "options.batchSize"),
        ({"batchSize": 5000}, "options.batchSize"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            yard.create_batch_job("generate-embeddings", input={"ns": "w"}, options=options)
        assert caught.value.field == field
    assert yard.list_batch_jobs(type="generate-embeddings") == []
    for k in (0, 1001, True):
        with pytest.raises(InvalidInput, match="k must be"):
            yard.search("w", "a", k=k)
    with pytest.raises(InvalidInput, match="query"):
        yard.search("w", "  ")


class CountingLetters(Letters):
    """Letters, remembering the texts of every call; a text with "poison" in it fails its
    call, as a model that cannot take an input does."""

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        if any("poison" in text for text in texts):
            raise ValueError("the model cannot take this text")
        return super().encode(texts)


def mixed(n):
    # texts of 1 to 60 letters, each of its own make-up, in no order of length
    return "".join(string.ascii_lowercase[(n * 7 + k * k) % 26] for k in range((n * 37) % 60 + 1))


def test_a_group_of_chunks_is_encoded_longest_first_and_each_vector_stays_with_its_item(
    make_yard,
):
    letters = CountingLetters()
    yard = make_yard(embedder=letters)
    put_things(yard, [{"ns": "m", "id": f"m{n:03}", "content": mixed(n)} for n in range(320)])
    put_things(yard, [{"ns": "m", "id": "blank", "content": " "}])
    refs = [{"ns": "m", "id": f"m{n:03}"} for n in range(320)]
    refs[5:5] = [{"ns": "m", "id": "gone"}]
    refs[250:250] = [{"ns": "m", "id": "blank"}]
    job_id = yard.create_batch_job("generate-embeddings", refs, options={"batchSize": 50})
    yard.run_worker(wait=False)

    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed, job.failed) == ("failed", 320, 2)
    assert [(e.index, e.error) for e in job.errors] == [
        (5, "not found: m/gone"),
        (250, "no text to embed: content empty or missing"),
    ]
    # the four chunks were one group: its texts sorted across chunks, 50 to a call
    assert [len(call) for call in letters.calls] == [50] * 6 + [20]
    lengths = [len(text) for call in letters.calls for text in call]
    assert lengths == sorted(lengths, reverse=True)
    vectors = stored_vectors(yard, "m")
    assert len(vectors) == 320
    for n in range(320):
        expected = Letters().encode([mixed(n)])[0]
        expected = expected / np.linalg.norm(expected)
        np.testing.assert_allclose(vectors[f"m{n:03}"][3], expected, atol=1e-6)


def test_a_chunk_the_model_fails_in_a_group_dies_alone_and_the_others_are_stored(
    make_yard, clock, caplog
):
    letters = CountingLetters()
    yard = make_yard(embedder=letters, clock=clock, retry=RetryPolicy(jitter=0.0))
    things = [{"ns": "p", "id": f"p{n:03}", "content": mixed(n)} for n in range(300)]
    things[150]["content"] = "poison"
    put_things(yard, things)
    job_id = yard.create_batch_job("generate-embeddings", input={"ns": "p"})
    for _ in range(4):  # the first try and three retries, each after its backoff
        yard.run_worker(wait=False)
        clock.advance(600)
    assert "a group of 3 job.chunk tasks failed" in caplog.text  # they were tried together
    dead = yard.list_dead_chunks(job_id)
    assert [(d.chunk, d.attempts, d.items) for d in dead] == [(1, 4, 100)]
    assert "the model cannot take this text" in dead[0].error
    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed, job.failed, job.dead_letters) == ("failed", 200, 0, 1)
    kept = [f"p{n:03}" for n in (*range(100), *range(200, 300))]
    assert sorted(stored_vectors(yard, "p")) == kept
