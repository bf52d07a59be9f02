"""Batchyard's routes over iterator jobs: start one by its handlers' names, list, read,
pause, resume, cancel and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from batchyard.http.paging import Cursor, Limit, Page, offset_of, positional_page
from batchyard.iterator import MAX_PARALLELISM, IteratorState, IteratorStatus
from batchyard.yard import Yard

router = APIRouter(tags=["iterators"])
JobId = Annotated[str, Path(min_length=1, max_length=512)]  # may hold "/", like a batch id
HandlerName = Annotated[str, Field(min_length=1, max_length=512)]


class StartIterator(BaseModel):
    """An iterator job over handlers the server's application registered, by name."""

    job_id: str = Field(min_length=1, max_length=512)
    batch_size: int = Field(gt=0, le=1_000_000, strict=True)
    get_next_batch: HandlerName
    process_batch: HandlerName
    on_complete: HandlerName | None = None
    delay_between_batches: float = Field(default=0.1, ge=0, le=86_400)
    max_retries: int = Field(default=5, ge=0, le=1000, strict=True)
    transactional: bool = False
    parallelism: int = Field(default=1, ge=1, le=MAX_PARALLELISM, strict=True)


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


@router.post("/iterators", status_code=201)
def start_iterator(body: StartIterator, request: Request) -> IteratorStatus:
    """Start a job; an unknown handler name is a 422, an existing job id a 409. With
    `parallelism` above 1 the source (one that can be cut into ranges: a keyset or a file
    source) runs as that many slices at once; a source that cannot be cut is a 422."""
    return _yard(request).start_iterator(
        body.job_id,
        batch_size=body.batch_size,
        get_next_batch=body.get_next_batch,
        process_batch=body.process_batch,
        on_complete=body.on_complete,
        delay_between_batches=body.delay_between_batches,
        max_retries=body.max_retries,
        transactional=body.transactional,
        parallelism=body.parallelism,
    )


@router.get("/iterators")
def list_iterators(
    request: Request,
    status: IteratorState | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[IteratorStatus]:
    """Jobs, most recently changed first (`total` is null)."""
    offset = offset_of(cursor)
    rows = _yard(request).list_iterator_jobs(
        None if status is None else status.value, limit + 1, offset
    )
    return positional_page(rows, limit, offset)


@router.post("/iterators/{job_id:path}/pause")
def pause_iterator(job_id: JobId, request: Request) -> IteratorStatus:
    """Pause a job; a page in flight cannot move the cursor afterwards."""
    return _yard(request).pause_iterator(job_id)


@router.post("/iterators/{job_id:path}/resume")
def resume_iterator(job_id: JobId, request: Request) -> IteratorStatus:
    """Resume a paused or failed job from its last checkpoint."""
    return _yard(request).resume_iterator(job_id)


@router.post("/iterators/{job_id:path}/cancel")
def cancel_iterator(job_id: JobId, request: Request) -> IteratorStatus:
    """Cancel a job (status `cancelled`)."""
    return _yard(request).cancel_iterator(job_id)


@router.get("/iterators/{job_id:path}")
def iterator_status(job_id: JobId, request: Request) -> IteratorStatus:
    """Status, progress, cursor, rate and (with a total) ETA; a parallel job's slices."""
    return _yard(request).get_iterator_status(job_id)


@router.delete("/iterators/{job_id:path}", status_code=204)
def delete_iterator(job_id: JobId, request: Request) -> Response:
    """Delete a job that is no longer running (409 while it runs)."""
    _yard(request).delete_iterator_job(job_id)
    return Response(status_code=204)
