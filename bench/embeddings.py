"""Embeddings against the bare model, in one run.

    python bench/embeddings.py [--repeat 3] [--things 5000] [--batch-size 64]
                               [--concurrency 4,1] [--search-vectors 1000000]
                               [--stores sqlite,postgres]      (--things 0: search only)

Jobs: items/s of a generate-embeddings job over N things (chunk tasks, reading the things,
hashes, encoding, fenced commits with progress, run by the in-process worker until the job
is done) against a bare `model.encode` of the same texts with the same batch size. Each
run embeds a fresh namespace, so nothing is skipped. The bare encode and the job at each
concurrency take turns run by run, so a drift of the shared machine weighs on each alike.
The model is loaded before any timing.

Search: one `yard.search` over N stored vectors (random unit vectors written directly, not
embedded), queries/s, against a single numpy matrix product over the same
vectors already in memory.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table, timed
from batchyard import Yard
from batchyard.bulk.embeddings import UPSERT_EMBEDDINGS
from batchyard.bulk.things import UPSERT_THINGS, thing_row
from batchyard.embedder import SentenceTransformerEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = [
    "widget",
    "gadget",
    "kettle",
    "lamp",
    "chair",
    "table",
    "sturdy",
    "light",
    "steel",
    "oak",
    "blue",
    "red",
    "small",
    "large",
    "quiet",
    "fast",
    "kitchen",
    "garden",
    "office",
    "travel",
    "handmade",
    "durable",
    "compact",
    "warm",
    "soft",
    "bright",
    "classic",
    "modern",
    "portable",
    "wireless",
    "rechargeable",
    "waterproof",
]


def texts(n: int) -> list[str]:
    """Product descriptions of 4 to 60 words: short and long texts mixed, as in a
    catalogue."""
    rng = random.Random(7)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60))) for _ in range(n)]


def bare_encode(model: SentenceTransformerEmbedder, corpus: list[str], batch_size: int) -> int:
    model.model().encode(
        corpus,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return len(corpus)


def put_things(yard: Yard, ns: str, corpus: list[str]) -> None:
    rows = [
        thing_row({"ns": ns, "id": f"t{i:06}", "content": text}) for i, text in enumerate(corpus)
    ]
    with yard.store.transaction() as tx:
        tx.executemany(UPSERT_THINGS, rows)


def job_embed(yard: Yard, ns: str, n: int, batch_size: int, concurrency: int) -> int:
    job_id = yard.create_batch_job(
        "generate-embeddings", input={"ns": ns}, options={"batchSize": batch_size}
    )
    yard.run_worker(concurrency=concurrency, wait=False)
    job = yard.get_batch_job(job_id)
    assert job.status == "completed" and job.processed == n, job
    return n


def measure_jobs(
    url: str,
    label: str,
    model: SentenceTransformerEmbedder,
    n: int,
    batch_size: int,
    concurrencies: list[int],
    repeat: int,
) -> None:
    yard = Yard(url, embedder=model)
    corpus = texts(n)
    namespaces = iter(range(10_000))
    # items per CPU second of this process too: on a crowded machine a side with more
    # threads than the bare encode's also takes a larger share of the cores, which the
    # wall clock counts as its own speed
    cpu: list[list[float]] = [[] for _ in range(1 + len(concurrencies))]

    def clocked(side: int, fn: Callable[[], int]) -> tuple[int, float]:
        started = time.process_time()
        items, seconds = timed(fn)
        cpu[side].append(items / (time.process_time() - started))
        return items, seconds

    def bare() -> tuple[int, float]:
        return clocked(0, lambda: bare_encode(model, corpus, batch_size))

    def job_at(side: int, concurrency: int) -> Callable[[], tuple[int, float]]:
        def one_job() -> tuple[int, float]:
            ns = f"run{next(namespaces)}"
            put_things(yard, ns, corpus)  # not timed: the job's own work starts at its creation
            return clocked(side, lambda: job_embed(yard, ns, n, batch_size, concurrency))

        return one_job

    runs = [bare, *(job_at(side, c) for side, c in enumerate(concurrencies, start=1))]
    rates = median_rates(runs, repeat)
    per_cpu = [
        {"median": statistics.median(done), "min": min(done), "max": max(done)} for done in cpu
    ]
    for unit, figures in (("items/s", rates), ("items per CPU second", per_cpu)):
        print_table(
            f"{label}: embeddings of {n:,} things, batch size {batch_size} ({unit})",
            [
                (f"bare model.encode(texts, batch_size={batch_size})", figures[0], "the baseline"),
                *(
                    (
                        f"generate-embeddings job, concurrency {concurrency}",
                        rate,
                        "goal >= 0.8" if concurrency == 1 else "goal >= 0.9",
                    )
                    for concurrency, rate in zip(concurrencies, figures[1:], strict=True)
                ),
            ],
        )
    yard.close()


def measure_search(
    url: str, label: str, model: SentenceTransformerEmbedder, n: int, repeat: int
) -> None:
    yard = Yard(url, embedder=model)
    rng = np.random.default_rng(7)
    kept = []
    for start in range(0, n, 20_000):
        block = rng.standard_normal((min(20_000, n - start), model.dimension))
        block = (block / np.linalg.norm(block, axis=1, keepdims=True)).astype("<f4")
        kept.append(block)
        with yard.store.transaction() as tx:
            tx.executemany(
                UPSERT_EMBEDDINGS,
                [
                    {
                        "ns": "vectors",
                        "model": model.name,
                        "id": f"v{start + i:08}",
                        "text_hash": "-",
                        "dimension": model.dimension,
                        "vector": row.tobytes(),
                    }
                    for i, row in enumerate(block)
                ],
            )
    matrix = np.concatenate(kept)
    query = model.encode(["a small quiet kitchen kettle"])[0]

    def ours() -> int:
        hits = yard.search("vectors", "a small quiet kitchen kettle", k=10)
        assert len(hits) == 10
        return 1

    def in_memory() -> int:
        np.argpartition(-(matrix @ query), 10)[:10]
        return 1

    # a query takes seconds: rates are printed per 1,000 queries to keep their digits
    floor, searched = median_rates([lambda: timed(in_memory), lambda: timed(ours)], repeat)
    print_table(
        f"{label}: search over {n:,} vectors of {model.dimension} (queries per 1,000 s)",
        [
            (
                "numpy matrix product over vectors in memory",
                {key: value * 1000 for key, value in floor.items()},
                "the floor: no reading",
            ),
            (
                "yard.search(ns, query, k=10)",
                {key: value * 1000 for key, value in searched.items()},
                f"{1 / searched['median']:.1f} s per query; reads every vector from the store",
            ),
        ],
    )
    yard.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--things", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    # run_worker's default, and one worker thread
    parser.add_argument("--concurrency", default="4,1")
    parser.add_argument("--search-vectors", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    started = time.perf_counter()
    model = SentenceTransformerEmbedder()
    model.encode(["warm up"])  # load the model before any timing
    stores = args.stores.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if args.things and "sqlite" in stores:
        measure_jobs(
            f"sqlite:///{fresh_sqlite()}",
            "SQLite",
            model,
            args.things,
            args.batch_size,
            concurrencies,
            args.repeat,
        )
    if args.things and "postgres" in stores:
        with fresh_postgres() as url:
            measure_jobs(
                url,
                "PostgreSQL",
                model,
                args.things,
                args.batch_size,
                concurrencies,
                args.repeat,
            )
    if args.search_vectors:
        if "sqlite" in stores:
            measure_search(
                f"sqlite:///{fresh_sqlite()}", "SQLite", model, args.search_vectors, args.repeat
            )
        if "postgres" in stores:
            with fresh_postgres() as url:
                measure_search(url, "PostgreSQL", model, args.search_vectors, args.repeat)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
