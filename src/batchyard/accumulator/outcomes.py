"""What an add returns and schedules: each call's result, as if the calls carried by one add
had run one by one, and what a filled batch's flush is scheduled with."""

from __future__ import annotations

from typing import Any

from batchyard.accumulator.records import AddResult, BatchStatus


def span_attributes(result: AddResult) -> dict[str, Any]:
    """What an add's span says of it: its item count, the batch its last item went to, and
    when its items went to more than one, all of them (those it filled, then that one)."""
    attributes: dict[str, Any] = {
        "batchyard.item_count": result.item_count,
        "batchyard.batch_id": result.batch_id,
    }
    batch_ids = list(dict.fromkeys((*result.flushed_batch_ids, result.batch_id)))
    if len(batch_ids) > 1:  # a list costs the SDK more than the rest together
        attributes["batchyard.batch_ids"] = batch_ids
    return attributes


# what a batch's flush task is scheduled with: its max attempts, handler, and whether its
# base is ordered
FlushSettings = tuple[int, str, bool]


def flush_settings(batch: Any) -> FlushSettings:
    return (batch["max_attempts"], batch["handler"], bool(batch["ordered"]))


# A batch an add reached: its id, how many of the add's items it took, whether the add
# closed it (full in items or bytes), and what its flush is scheduled with.
Filled = tuple[str, int, bool, FlushSettings]


def appended_result(batch_id: str) -> AddResult:
    """The result of a single-item add that left room in its batch."""
    return AddResult(
        batch_id=batch_id, item_count=1, flushed=False, status=BatchStatus.ACCUMULATING
    )


def call_results(calls: list[list[str]], filled: list[Filled]) -> list[AddResult]:
    """What each call returns, as if the calls had run one by one: `filled` holds, in
    order, the batches their items went to, with how many each took and whether the add
    closed it. A call names the batch its last item went to, and the batches it filled."""
    results = []
    batches = iter(filled)
    batch_id, left, full, _ = next(batches)
    for call in calls:
        needed = len(call)
        flushed: list[str] = []
        while True:
            taken = min(needed, left)
            needed, left = needed - taken, left - taken
            closed = left == 0 and full
            if closed:
                flushed.append(batch_id)
            if needed == 0:
                break
            batch_id, left, full, _ = next(batches)
        results.append(
            AddResult(
                batch_id=batch_id,
                item_count=len(call),
                flushed=bool(flushed),
                status=BatchStatus.FLUSHING if closed else BatchStatus.ACCUMULATING,
                flushed_batch_ids=tuple(flushed),
            )
        )
        if left == 0 and needed == 0:
            batch_id, left, full, _ = next(batches, (batch_id, 0, False, 0))
    return results
