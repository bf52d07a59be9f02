"""Semantic search: the things of a namespace nearest to a query, by cosine similarity.

The query is embedded with the yard's embedder and compared with the vectors that model
stored for the namespace. Vectors are unit length, so cosine similarity is a dot product:
the stored vectors are read a page at a time from one snapshot, scored with one matrix
product per page, and only a running top k is kept - memory stays bounded however many
vectors there are (a million 384-dimension vectors are 1.5 GB to read: seconds per query).
This is brute force on both stores; an approximate index (pgvector's) would trade
exactness for speed past that size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from batchyard.bulk.things import get_things
from batchyard.embedder import Embedder, unit_rows
from batchyard.errors import InvalidInput
from batchyard.store import Store

if TYPE_CHECKING:
    import numpy as np

MAX_K = 1000
PAGE_ROWS = 4096  # vectors scored per matrix product: 6 MB at 384 dimensions


class SearchHit(BaseModel):
    """A thing near the query: its similarity (1 is the same direction) and its record
    (None if the thing was deleted after it was embedded)."""

    ns: str
    id: str
    score: float
    thing: dict[str, Any] | None


def search(
    store: Store,
    embedder: Embedder,
    ns: str,
    query: str,
    k: int = 10,
    *,
    page_rows: int = PAGE_ROWS,
) -> list[SearchHit]:
    """The `k` things of `ns` whose stored vectors are nearest to `query`, best first."""
    import numpy as np

    if not isinstance(ns, str) or not ns:
        raise InvalidInput("ns must be a non-empty string", field="ns")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("the query must be a non-empty string", field="q")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer from 1 to {MAX_K}", field="k")
    dimension = embedder.dimension
    target = unit_rows(embedder.encode([query]), 1, dimension)[0]
    best_ids: list[str] = []
    best_scores = np.empty(0, dtype=np.float32)
    with store.snapshot() as tx:
        rows = tx.stream(
            "SELECT id, vector FROM batchyard_embeddings "
            "WHERE ns = :ns AND model = :model AND dimension = :dimension "
            "ORDER BY id",
            {"ns": ns, "model": embedder.name, "dimension": dimension},
            size=page_rows,
        )
        while page := _take(rows, page_rows):
            ids = best_ids + [row[0] for row in page]
            vectors = np.frombuffer(b"".join(bytes(row[1]) for row in page), dtype="<f4")
            scores = np.concatenate([best_scores, vectors.reshape(-1, dimension) @ target])
            keep = _top(scores, k)
            best_ids, best_scores = [ids[i] for i in keep], scores[keep]
        found = get_things(tx, [{"ns": ns, "id": id} for id in best_ids])
    return [
        SearchHit(ns=ns, id=id, score=float(score), thing=found.get((ns, id)))
        for id, score in zip(best_ids, best_scores, strict=True)
    ]


def _take(rows: Any, count: int) -> list[Any]:
    page = []
    for row in rows:
        page.append(row)
        if len(page) == count:
            break
    return page


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores, highest first (ties: the earlier, lower id)."""
    import numpy as np

    picked = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    return picked[np.lexsort((picked, -scores[picked]))]
