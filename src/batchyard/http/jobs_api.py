"""The bulk job routes, with the batch service's paths and JSON shapes: `POST /batch`,
`GET /batch/{id}`, `GET /export/{ns}`, `GET /stats`, and the pages, cancel and dead letters
around them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from batchyard.bulk.export import FORMATS
from batchyard.bulk.records import BulkItemError, BulkItemResult, BulkJob, BulkJobStats, DeadChunk
from batchyard.bulk.service import MAX_ITEMS_PER_JOB, job_types
from batchyard.http.downloads import export_download
from batchyard.yard import Yard

router = APIRouter()
REPLAYED_HEADER = "Idempotency-Replayed"
JobType = Literal[tuple(job_types())]  # type: ignore[valid-type]
JobId = Annotated[str, Path(min_length=1, max_length=64)]
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # a 64-bit id: larger ones reach no store
# bounded: the stores keep 64-bit integers, and a larger number must be a 422, not a 500
After = Annotated[int, Query(ge=-1, le=2**62, description="the last index of the previous page")]
Limit = Annotated[int, Query(ge=1, le=1000)]


class CreateJob(BaseModel):
    type: JobType  # type: ignore[valid-type]
    items: list[Any] = Field(default_factory=list, max_length=MAX_ITEMS_PER_JOB)
    input: Any = None
    options: dict[str, Any] | None = None
    callbackUrl: str | None = Field(
        default=None,
        max_length=2048,
        description="an http(s) URL that receives the final job, signed, when it ends",
    )


class Created(BaseModel):
    success: bool
    jobId: str
    message: str
    replayed: bool = Field(
        description="true when an earlier request with the same Idempotency-Key made the job"
    )


class JobEnvelope(BaseModel):
    success: bool
    job: BulkJob


class JobsEnvelope(BaseModel):
    success: bool
    jobs: list[BulkJob]


class ErrorsPage(BaseModel):
    success: bool
    errors: list[BulkItemError]


class ResultsPage(BaseModel):
    success: bool
    results: list[BulkItemResult]


class StatsEnvelope(BaseModel):
    success: bool
    stats: BulkJobStats


class DeadChunks(BaseModel):
    success: bool
    deadLetters: list[DeadChunk]


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


@router.post(
    "/batch",
    tags=["jobs"],
    responses={
        200: {
            "headers": {
                REPLAYED_HEADER: {
                    "description": "`true` when the Idempotency-Key replayed an earlier job",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
        }
    },
)
def create_job(
    body: CreateJob,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> Created:
    """Create a bulk job. The same `Idempotency-Key` returns the first job, marked as a
    replay (`replayed: true` and the header `Idempotency-Replayed: true`); the same key
    with a different body is refused with 422."""
    made = _yard(request).submit_batch_job(
        body.type,
        body.items,
        input=body.input,
        options=body.options,
        request_id=idempotency_key,
        callback_url=body.callbackUrl,
    )
    if made.replayed:
        response.headers[REPLAYED_HEADER] = "true"
        message = "Batch job already created for this Idempotency-Key; no new job was queued"
    else:
        message = "Batch job created and queued"
    return Created(success=True, jobId=made.job_id, message=message, replayed=made.replayed)


@router.get("/batch", tags=["jobs"])
def list_jobs(
    request: Request,
    status: str | None = None,
    type: str | None = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> JobsEnvelope:
    """Jobs, newest first, each failed one with its first 10 errors (no results)."""
    jobs = _yard(request).list_batch_jobs(status=status, type=type, limit=limit, offset=offset)
    return JobsEnvelope(success=True, jobs=jobs)


@router.get("/batch/dead-letters", tags=["jobs"])
def dead_letters(request: Request, job: str | None = None, limit: Limit = 100) -> DeadChunks:
    """Chunks that used up their retries."""
    return DeadChunks(success=True, deadLetters=_yard(request).list_dead_chunks(job, limit))


@router.post("/batch/dead-letters/{task_id}/redrive", tags=["jobs"])
def redrive_chunk(task_id: TaskId, request: Request) -> JobEnvelope:
    """Queue a dead chunk again; its job goes back to processing."""
    return JobEnvelope(success=True, job=_yard(request).redrive_chunk(task_id))


@router.post("/batch/{job_id}/retry", tags=["jobs"])
def retry_failed_items(job_id: JobId, request: Request) -> Created:
    """A new job of the ended job's failed items (and its dead chunks' items); once per job:
    asked again, the same job, marked as a replay. 409 while the job runs or when nothing
    failed."""
    retry = _yard(request).submit_failed_items_retry(job_id)
    return Created(
        success=True,
        jobId=retry.job_id,
        message="The job retrying these failed items already exists"
        if retry.replayed
        else "A job of the failed items was created and queued",
        replayed=retry.replayed,
    )


@router.get("/batch/{job_id}", tags=["jobs"])
def get_job(job_id: JobId, request: Request) -> JobEnvelope:
    """A job with its progress and the first 100 errors and results."""
    return JobEnvelope(success=True, job=_yard(request).get_batch_job(job_id))


@router.post("/batch/{job_id}/cancel", tags=["jobs"])
def cancel_job(job_id: JobId, request: Request) -> JobEnvelope:
    """Start no more of the job's chunks."""
    return JobEnvelope(success=True, job=_yard(request).cancel_batch_job(job_id))


@router.get("/batch/{job_id}/errors", tags=["jobs"])
def job_errors(
    job_id: JobId, request: Request, after: After = -1, limit: Limit = 100
) -> ErrorsPage:
    """Per-item errors by index, a page at a time."""
    return ErrorsPage(
        success=True, errors=_yard(request).get_batch_job_errors(job_id, after=after, limit=limit)
    )


@router.get("/batch/{job_id}/results", tags=["jobs"])
def job_results(
    job_id: JobId, request: Request, after: After = -1, limit: Limit = 100
) -> ResultsPage:
    """Per-item results by index, a page at a time."""
    return ResultsPage(
        success=True, results=_yard(request).get_batch_job_results(job_id, after=after, limit=limit)
    )


@router.get("/stats", tags=["jobs"])
def stats(request: Request) -> StatsEnvelope:
    """Jobs by status, and the share of finished jobs that completed."""
    return StatsEnvelope(success=True, stats=_yard(request).get_stats())


@router.get(
    "/export/{ns}",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in FORMATS.values()}}},
)
def export(
    ns: Annotated[str, Path(min_length=1, max_length=512)],
    request: Request,
    format: Literal["json", "csv", "ndjson"] = "json",
) -> StreamingResponse:
    """Download the namespace's things, streamed from one snapshot."""
    return export_download(_yard(request), ns, format)
