"""The embeddings tests run the real all-MiniLM-L6-v2 model of the batchyard[embeddings]
extra, loaded once per session; `CountingEmbedder` wraps it to see what is encoded."""

from __future__ import annotations

import os

import pytest

from batchyard.embedder import SentenceTransformerEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights come with a package


class CountingEmbedder:
    """The real model, remembering the texts of every `encode` call."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


@pytest.fixture(scope="session")
def model():
    return SentenceTransformerEmbedder()


@pytest.fixture
def counting(model):
    return CountingEmbedder(model)


def put_things(yard, things):
    """Store things through an import-things job, as users do."""
    job_id = yard.create_batch_job("import-things", things)
    yard.run_worker(wait=False)
    assert yard.get_batch_job(job_id).status == "completed"


def embed(yard, *items, **options):
    """Run a generate-embeddings job to its end; its record."""
    if items:
        job_id = yard.create_batch_job("generate-embeddings", list(items), options=options)
    else:
        job_id = yard.create_batch_job(
            "generate-embeddings", input={"ns": options.pop("ns")}, options=options
        )
    yard.run_worker(wait=False)
    return yard.get_batch_job(job_id)


def stored_vectors(yard, ns):
    import numpy as np

    with yard.store.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT id, model, text_hash, dimension, vector FROM batchyard_embeddings "
            "WHERE ns = :ns ORDER BY id",
            {"ns": ns},
        )
    return {
        row["id"]: (
            row["model"],
            row["text_hash"],
            row["dimension"],
            np.frombuffer(bytes(row["vector"]), dtype="<f4"),
        )
        for row in rows
    }
