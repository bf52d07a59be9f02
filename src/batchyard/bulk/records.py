"""The bulk job service's records: a job, its per-item errors and results, dead chunks,
stats (JSON in camelCase over HTTP, snake_case in Python)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from batchyard.clock import to_datetime


class BulkJobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Model(BaseModel):
    # the seed's JSON names (createdAt ...) on the wire, snake_case in Python
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class BulkItemError(_Model):
    index: int
    error: str


class BulkItemResult(_Model):
    index: int
    result: Any


class WebhookDelivery(_Model):
    """One attempt to deliver a job's webhook: the receiver's status, or why it failed."""

    attempt: int
    status_code: int | None
    error: str | None
    duration: float = Field(description="seconds")
    delivered_at: datetime


class BulkJob(_Model):
    """A bulk job as the batch service shows it. `errors` and `results` hold the first
    page only (100); `get_batch_job_errors` / `get_batch_job_results` page the rest."""

    id: str
    type: str
    status: BulkJobStatus
    total: int
    processed: int
    failed: int
    results: list[Any]
    errors: list[BulkItemError]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    dead_letters: int = Field(0, description="chunks in the dead letters")
    last_error: str | None = None
    parent_job_id: str | None = Field(
        None, description="the job whose failed items this job retries"
    )
    retry_job_ids: list[str] = Field(
        default_factory=list, description="the job retrying this one's failed items"
    )
    callback_url: str | None = Field(None, description="the webhook told when the job ends")
    throttled_seconds: float = Field(
        0.0, description="how long its chunks waited because its throttle asked them to"
    )
    deliveries: list[WebhookDelivery] = Field(
        default_factory=list, description="the webhook's delivery attempts, the last 20"
    )


class BulkJobStats(_Model):
    total: int
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    success_rate: str = Field(description="completed / (completed + failed), e.g. '85.71%'")
    success_rate_value: float = Field(
        ge=0.0,
        le=1.0,
        description="the same share as a number from 0 to 1, unrounded (0.857142...); "
        "0 while no job has finished",
    )


@dataclass(frozen=True)
class BulkJobSubmission:
    """What `BulkJobs.submit` did: the job's id, and whether an earlier request with the
    same request id had already created it (a replay: nothing new was made)."""

    job_id: str
    replayed: bool


class DeadChunk(_Model):
    task_id: int
    job_id: str
    chunk: int
    items: int
    attempts: int
    error: str | None
    died_at: datetime


def job_record(
    row: Any,
    errors: list[BulkItemError],
    results: list[Any],
    retries: list[str] | None = None,
    deliveries: list[WebhookDelivery] | None = None,
) -> BulkJob:
    return BulkJob(
        id=row["id"],
        type=row["type"],
        status=row["status"],
        total=row["total"],
        processed=row["processed"],
        failed=row["failed"],
        results=results,
        errors=errors,
        created_at=to_datetime(row["created_at"]),
        updated_at=to_datetime(row["updated_at"]),
        completed_at=to_datetime(row["completed_at"]),
        dead_letters=row["dead_chunks"],
        last_error=row["last_error"],
        parent_job_id=row["parent_id"],
        retry_job_ids=retries or [],
        callback_url=row["callback_url"],
        throttled_seconds=float(row["throttled_seconds"]),
        deliveries=deliveries or [],
    )


def delivery_record(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        attempt=row["attempt"],
        status_code=row["status_code"],
        error=row["error"],
        duration=row["duration"],
        delivered_at=to_datetime(row["delivered_at"]),
    )
