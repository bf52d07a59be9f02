"""The dashboard's iterator pages: the jobs, one job's progress, and pause, resume, cancel
and delete (the last two confirmed first)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.errors import BatchyardError
from batchyard.http.dashboard._common import (
    PAGE,
    PREFIX,
    ActionForm,
    back_to,
    confirmed_action,
    dashboard_of,
)
from batchyard.http.dashboard.lists import ListView
from batchyard.iterator.records import IteratorState

ITERATORS = f"{PREFIX}/iterators"
NAV = ("Iterator jobs", ITERATORS)
NOTICES = {
    "paused": "Job paused.",
    "resumed": "Job resumed from its last checkpoint.",
    "cancelled": "Job cancelled.",
    "deleted": "Job deleted.",
}

router = APIRouter(include_in_schema=False)


@router.get(ITERATORS, **PAGE)
def iterators(request: Request) -> Response:
    dashboard = dashboard_of(request)
    jobs = ListView.of(request, "jobs", [s.value for s in IteratorState], "job id starts with")
    return dashboard.render(
        request,
        "iterators.html",
        jobs=jobs.positional(
            lambda limit, offset: dashboard.yard.list_iterator_jobs(
                jobs.status, limit, offset, jobs.prefix
            )
        ),
    )


def _add_action(verb: str, notice: str) -> None:
    """POST `.../<verb>`, calling the yard's `<verb>_iterator`: pause and resume differ in
    nothing else."""

    def action(request: Request, job_id: str, form: ActionForm) -> Response:
        dashboard = dashboard_of(request)
        method = getattr(dashboard.yard, f"{verb}_iterator")
        return dashboard.act(
            request,
            lambda: method(job_id),
            notice,
            back_to(form, f"{ITERATORS}/{quote(job_id, '')}"),
        )

    router.post(f"{ITERATORS}/{{job_id:path}}/{verb}", name=f"iterator_{verb}")(action)


for _verb, _notice in (("pause", "paused"), ("resume", "resumed")):
    _add_action(_verb, _notice)

for _verb, _method, _notice, _question in (
    (
        "cancel",
        lambda yard, job_id: yard.cancel_iterator(job_id),
        "cancelled",
        "Cancel iterator job {}? It stops for good "
        "(its checkpoint is kept, but it cannot be resumed).",
    ),
    (
        "delete",
        lambda yard, job_id: yard.delete_iterator_job(job_id),
        "deleted",
        "Delete iterator job {} and its checkpoint?",
    ),
):
    confirmed_action(
        router,
        f"{ITERATORS}/{{job_id:path}}/{_verb}",
        f"iterator_{_verb}",
        _method,
        _notice,
        _question,
        lambda job_id: ITERATORS,
    )


# after the actions' pages: ids may hold "/", and ".../cancel" is cancel's page
@router.get(f"{ITERATORS}/{{job_id:path}}", **PAGE)
def iterator(request: Request, job_id: str) -> Response:
    dashboard = dashboard_of(request)
    errors = ListView.of(request, "errors")
    try:
        job = dashboard.yard.get_iterator_status(job_id)
    except BatchyardError as exc:
        return dashboard.render(request, "error.html", 404, message=str(exc), back=ITERATORS)
    return dashboard.render(
        request,
        "iterator.html",
        job=job,
        errors=errors.positional(
            lambda limit, offset: dashboard.yard.get_iterator_errors(job_id, limit, offset)
        ),
    )
