"""The dashboard's batch pages: the bases and the dead batches, one base's batches with its
flush history, and the actions on a batch (flush, redrive, discard)."""

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

BATCHES = f"{PREFIX}/batches"
NAV = ("Batches", BATCHES)
NOTICES = {
    "flushed": "Flush scheduled: a worker delivers the batch shortly.",
    "nothing": "Nothing to flush: no batch is accumulating.",
    "redriven": "Batch redriven: its flush starts again with fresh attempts.",
    "discarded": "Batch discarded: its items will not be delivered (the history says so).",
}
# the states of a base's active batches, and how a flush attempt can end
BATCH_STATES = ("accumulating", "flushing", "dead")
OUTCOMES = ("completed", "partial", "failed", "discarded")
DEAD_ITEMS_SHOWN = 50  # per dead batch on its base's page; the API pages through the rest

router = APIRouter(include_in_schema=False)


@router.get(BATCHES, **PAGE)
def batches(request: Request) -> Response:
    dashboard = dashboard_of(request)
    bases = ListView.of(request, "bases", label="base id starts with")
    dead = ListView.of(request, "dead", label="batch id starts with")
    key = dead.key(int)
    page = dashboard.yard.page_batches(
        "dead", limit=dead.limit, cursor=None if key is None else int(key), prefix=dead.prefix
    )
    return dashboard.render(
        request,
        "batches.html",
        bases=bases.positional(
            lambda limit, offset: dashboard.overview.bases(limit, offset, bases.prefix)
        ),
        dead=dead.paged(page.batches, page.next_cursor, page.total),
    )


def _base_page(batch_id: str) -> str:
    """The dashboard page of a batch's base id."""
    return f"{BATCHES}/{quote(batch_id.partition('::')[0], '')}"


# before the base's page: ids may hold "/", and ".../discard" is discard's page
confirmed_action(
    router,
    f"{BATCHES}/{{batch_id:path}}/discard",
    "batch_discard",
    lambda yard, batch_id: yard.discard_batch(batch_id),
    "discarded",
    "Discard dead batch {}? Its pending items are never delivered; the flush history "
    "records them as dropped.",
    _base_page,
)


@router.get(f"{BATCHES}/{{batch_id:path}}/items", **PAGE)
def batch_items(request: Request, batch_id: str) -> Response:
    """One batch (a dead one, mostly) with all its items, a page at a time by position."""
    if "::" not in batch_id:  # a base id that ends in "/items", not a batch's items
        return batch_base(request, f"{batch_id}/items")
    dashboard = dashboard_of(request)
    yard = dashboard.yard
    items = ListView.of(request, "items")
    try:
        found = yard.get_batch_status(batch_id)
    except BatchyardError as exc:  # not a batch id at all
        found, error = [], str(exc)
    else:
        error = f"no batch {batch_id!r}"
    if not found:
        return dashboard.render(request, "error.html", 404, message=error, back=BATCHES)
    [batch] = found
    blocker = None
    if batch.blocked_by is not None:  # what it waits for: a dead one waits for people
        blocker = next(iter(yard.get_batch_status(batch.blocked_by)), None)
    after = items.key(int)
    rows = yard.get_batch_items(
        batch_id, after=None if after is None else int(after), limit=items.limit + 1
    )
    return dashboard.render(
        request,
        "batch_items.html",
        batch=batch,
        blocker=blocker,
        items=items.keyed(rows, lambda item: int(item.position)),
        base_page=_base_page(batch_id),
    )


@router.get(f"{BATCHES}/{{base_id:path}}", **PAGE)
def batch_base(request: Request, base_id: str) -> Response:
    dashboard = dashboard_of(request)
    yard = dashboard.yard
    active = ListView.of(request, "active", BATCH_STATES, label="batch id starts with")
    history = ListView.of(request, "history", OUTCOMES, label="batch id starts with")
    every = yard.get_batch_status(base_id)
    batches = [
        b
        for b in every
        if (active.status is None or b.status == active.status)
        and b.batch_id.startswith(active.prefix or "")
    ]
    dead_items = {
        b.batch_id: yard.get_batch_items(b.batch_id, limit=DEAD_ITEMS_SHOWN)
        for b in batches
        if b.status == "dead"
    }
    return dashboard.render(
        request,
        "batch.html",
        base_id=base_id,
        active=active.sliced(batches),
        # each active batch's state, for what a blocked one waits for (on any page)
        states={b.batch_id: b.status for b in every},
        dead_items=dead_items,
        shown=DEAD_ITEMS_SHOWN,
        history=history.positional(
            lambda limit, offset: yard.get_flush_history(
                base_id, limit, offset, history.status, history.prefix
            )
        ),
    )


@router.post(f"{BATCHES}/{{batch_id:path}}/flush")
def flush(request: Request, batch_id: str, form: ActionForm) -> Response:
    dashboard = dashboard_of(request)

    def run() -> str:
        return "flushed" if dashboard.yard.flush(batch_id).flushed else "nothing"

    return dashboard.act(request, run, "flushed", back_to(form, BATCHES))


@router.post(f"{BATCHES}/{{batch_id:path}}/redrive")
def redrive(request: Request, batch_id: str, form: ActionForm) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.act(
        request, lambda: dashboard.yard.redrive_batch(batch_id), "redriven", back_to(form, BATCHES)
    )
