"""The dashboard's bulk-job pages: jobs with their progress, errors a page at a time, cancel,
dead chunks grouped by error with redrive, and namespace exports to download."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from batchyard.bulk.export import FORMATS
from batchyard.bulk.records import BulkJobStatus
from batchyard.errors import BatchyardError
from batchyard.http.dashboard._common import (
    PAGE,
    PREFIX,
    ActionForm,
    confirmed_action,
    dashboard_of,
    viewer,
)
from batchyard.http.dashboard.lists import ListView
from batchyard.http.downloads import export_download

JOBS = f"{PREFIX}/jobs"
NAV = ("Bulk jobs", JOBS)
NOTICES = {
    "job-cancelled": "Job cancelled: no new chunk of it starts.",
    "chunks-redriven": "Dead chunks queued again; their jobs are processing.",
    "job-retried": "This job retries the failed items of the job it names.",
}

router = APIRouter(include_in_schema=False)


@router.get(JOBS, **PAGE)
def jobs(request: Request) -> Response:
    dashboard = dashboard_of(request)
    yard = dashboard.yard
    listed = ListView.of(request, "jobs", [s.value for s in BulkJobStatus], "job id starts with")
    dead = ListView.of(request, "dead", label="job id starts with")
    return dashboard.render(
        request,
        "jobs.html",
        jobs=listed.positional(
            lambda limit, offset: yard.list_batch_jobs(
                listed.status, None, limit, offset, listed.prefix
            )
        ),
        stats=yard.get_stats(),
        dead=dead.positional(
            lambda limit, offset: yard.list_dead_chunks(
                limit=limit, offset=offset, job_prefix=dead.prefix or ""
            )
        ),
        formats=list(FORMATS),
    )


@router.get(f"{JOBS}/{{job_id}}", **PAGE)
def job(request: Request, job_id: str) -> Response:
    dashboard = dashboard_of(request)
    errors = ListView.of(request, "errors")
    try:
        record = dashboard.yard.get_batch_job(job_id)
    except BatchyardError as exc:
        return dashboard.render(request, "error.html", 404, message=str(exc), back=JOBS)
    after = errors.key(int)
    rows = dashboard.yard.get_batch_job_errors(
        job_id, after=-1 if after is None else int(after), limit=errors.limit + 1
    )
    return dashboard.render(
        request, "job.html", job=record, errors=errors.keyed(rows, lambda e: int(e.index))
    )


confirmed_action(
    router,
    f"{JOBS}/{{job_id}}/cancel",
    "job_cancel",
    lambda yard, job_id: yard.cancel_batch_job(job_id),
    "job-cancelled",
    "Cancel bulk job {}? No new chunk of it starts; items not yet done stay undone.",
    lambda job_id: f"{JOBS}/{job_id}",
)


@router.post(f"{JOBS}/{{job_id}}/retry")
def retry(request: Request, job_id: str, form: ActionForm) -> Response:
    """The job of this job's failed items (made once), shown at once."""
    dashboard = dashboard_of(request)
    made: list[str] = []
    answer = dashboard.act(
        request,
        lambda: made.append(dashboard.yard.retry_failed_items(job_id)),
        "job-retried",
        f"{JOBS}/{quote(job_id, safe='')}",
    )
    if not made:  # refused: the page says why
        return answer
    return RedirectResponse(f"{JOBS}/{quote(made[0], safe='')}?notice=job-retried", 303)


@router.post(f"{JOBS}/dead/redrive")
def redrive(request: Request, form: ActionForm) -> Response:
    dashboard = dashboard_of(request)
    yard = dashboard.yard
    error = form.get("error")

    def run() -> None:  # every dead chunk that failed with this error
        for chunk in yard.list_dead_chunks(limit=1000):
            if (chunk.error or "") == error:
                yard.redrive_chunk(chunk.task_id)

    return dashboard.act(request, run, "chunks-redriven", JOBS)


@router.get(f"{PREFIX}/export", dependencies=[Depends(viewer)])
def export(
    request: Request, ns: Annotated[str, Query(min_length=1, max_length=512)], format: str = "json"
) -> Response:
    yard = dashboard_of(request).yard
    return export_download(yard, ns, format if format in FORMATS else "json")
