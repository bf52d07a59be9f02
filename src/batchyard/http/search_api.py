"""`GET /search/{ns}?q=...&k=...`: the things nearest to a query, with their scores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from batchyard.bulk.search import MAX_K, SearchHit
from batchyard.yard import Yard

router = APIRouter()


class SearchResults(BaseModel):
    success: bool
    model: str
    results: list[SearchHit]


@router.get("/search/{ns}", tags=["search"])
def search(
    ns: Annotated[str, Path(min_length=1, max_length=512)],
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=10_000)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
) -> SearchResults:
    """The `k` things of `ns` nearest to `q` by cosine similarity, best first. Only things
    embedded by a generate-embeddings job with the server's model are found."""
    yard: Yard = request.app.state.yard
    return SearchResults(success=True, model=yard.embedder.name, results=yard.search(ns, q, k))
