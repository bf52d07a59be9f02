"""The dashboard's batcher pages: the batchers this server's application registered, and
one batcher's keys (each key's open batch, its flushing and dead ones, what an ordered key
waits for) with its recent flush history. A key's batches are ordinary batches: their
pages and actions are the batch pages'."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.accumulator import BatchInfo, BatchStatus
from batchyard.errors import NotFound
from batchyard.http.dashboard._common import PAGE, PREFIX, dashboard_of
from batchyard.http.dashboard.batches import BATCHES, OUTCOMES
from batchyard.http.dashboard.lists import ListView

BATCHERS = f"{PREFIX}/batchers"
NAV = ("Batchers", BATCHERS)
NOTICES: dict[str, str] = {}
KEY_STATES = ("accumulating", "flushing", "dead")

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class KeyRow:
    """One key of a batcher on its page: its unfinished batches, the open one apart."""

    key: str
    base_id: str
    open: BatchInfo | None  # the accumulating batch, if the key has one
    flushing: int
    dead: list[BatchInfo]
    pending: int
    blocked_by: str | None  # of an ordered key: the batch its next flush waits for
    oldest_age_seconds: float

    @property
    def base_page(self) -> str:
        return f"{BATCHES}/{quote(self.base_id, '')}"

    def has(self, state: str) -> bool:
        return {
            "accumulating": self.open is not None,
            "flushing": self.flushing > 0,
            "dead": bool(self.dead),
        }[state]


def key_rows(name: str, keys: dict[str, list[BatchInfo]]) -> list[KeyRow]:
    """The rows of a batcher's keys, by key, from its status."""
    rows = []
    for key, batches in sorted(keys.items()):
        accumulating = [b for b in batches if b.status == BatchStatus.ACCUMULATING]
        blocked = [b.blocked_by for b in batches if b.blocked_by is not None]
        rows.append(
            KeyRow(
                key=key,
                base_id=f"{name}:{key}",
                open=accumulating[0] if accumulating else None,
                flushing=sum(b.status == BatchStatus.FLUSHING for b in batches),
                dead=[b for b in batches if b.status == BatchStatus.DEAD],
                pending=sum(b.pending_count for b in batches),
                blocked_by=blocked[0] if blocked else None,
                oldest_age_seconds=max(b.age_seconds for b in batches),
            )
        )
    return rows


@router.get(BATCHERS, **PAGE)
def batchers(request: Request) -> Response:
    dashboard = dashboard_of(request)
    yard = dashboard.yard
    listed = ListView.of(request, "batchers", label="name starts with")
    shown = listed.sliced(yard.list_batchers(listed.prefix))
    # only the page's batchers are read from the store: a summary each
    summaries = yard.get_batcher_summaries([b.name for b in shown.rows])
    return dashboard.render(request, "batchers.html", batchers=shown, summaries=summaries)


@router.get(f"{BATCHERS}/{{name}}", **PAGE)
def batcher(request: Request, name: str) -> Response:
    dashboard = dashboard_of(request)
    yard = dashboard.yard
    try:
        summary = yard.get_batcher_summary(name)
    except NotFound as exc:
        return dashboard.render(request, "error.html", 404, message=str(exc), back=BATCHERS)
    keys = ListView.of(request, "keys", KEY_STATES, label="key starts with")
    history = ListView.of(request, "history", OUTCOMES, label="key starts with")
    rows = [
        row
        for row in key_rows(name, yard.get_batcher_status(name).keys)
        if row.key.startswith(keys.prefix or "") and (keys.status is None or row.has(keys.status))
    ]
    return dashboard.render(
        request,
        "batcher.html",
        summary=summary,
        b=summary.batcher,
        keys=keys.sliced(rows),
        history=history.positional(
            lambda limit, offset: yard.get_batcher_history(
                name, limit, offset, history.status, history.prefix
            )
        ),
    )
