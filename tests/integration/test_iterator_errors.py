"""An iterator job's error history stays bounded, on both stores: the newest `KEPT` failed
steps of each job, whatever else other jobs keep."""

from __future__ import annotations

from batchyard.iterator.errors import KEPT, ErrorHistory


def test_the_newest_failures_of_each_job_are_kept(yard):
    history = ErrorHistory(yard.store)
    with yard.store.transaction() as tx:
        for n in range(KEPT + 5):
            history.record(tx, "busy", batch=n, attempt=1, final=False, error=f"error {n}")
        history.record(tx, "quiet", batch=0, attempt=1, final=True, error="once")
    busy = history.read("busy", limit=1000)
    assert len(busy) == KEPT and busy[0].error == f"error {KEPT + 4}" and busy[-1].batch == 5
    assert [e.error for e in history.read("quiet")] == ["once"]
    assert [e.batch for e in history.read("busy", limit=2, offset=1)] == [KEPT + 3, KEPT + 2]
