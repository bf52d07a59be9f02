"""Sizing: what items weigh in bytes, and where an add's items go in batches with byte limits.

An item's size is the UTF-8 length of its JSON text, as the accumulator stores it; a batch
with `max_batch_bytes` never holds more than that many bytes of items. Each stored item
carries where it ends in its batch's bytes (`byte_end`), read from the item before it by
the statement that appends it, so the limit is kept exactly as the count is (see `sql`).
An item that would take its batch past the limit closes the batch and opens the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchyard.errors import InvalidInput


def item_size(encoded: str) -> int:
    """The UTF-8 size of one item's JSON text (ASCII, nearly always: its length)."""
    return len(encoded) if encoded.isascii() else len(encoded.encode())


def item_sizes(encoded: list[str], max_batch_bytes: int | None) -> list[int]:
    """The items' sizes; with a byte limit, an item larger than the limit - which no batch
    could take - is refused, naming its index, before anything is stored."""
    sizes = [item_size(item) for item in encoded]
    if max_batch_bytes is not None:
        for index, size in enumerate(sizes):
            if size > max_batch_bytes:
                raise InvalidInput(
                    f"items[{index}] is {size} bytes of JSON, more than "
                    f"max_batch_bytes ({max_batch_bytes})",
                    field="items",
                    index=index,
                )
    return sizes


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a run of an add's items goes in one batch."""

    taken: int  # how many of the add's items, in order
    position: int  # the position of the first of them
    bytes_before: int  # where the item before them ends, in the batch's bytes
    closed: bool  # the batch is full after them, in items or in bytes


def _place(
    sizes: list[int], start: int, position: int, used: int, max_size: int, max_bytes: int | None
) -> tuple[Placement, int]:
    """Items from `start` on into a batch holding `position` items of `used` bytes; the
    placement and the index of the first item left over."""
    before, room = used, max_size - position
    if max_bytes is None:  # by count alone
        end = min(len(sizes), start + room)
    else:
        end = start
        while end < len(sizes) and end - start < room and used + sizes[end] <= max_bytes:
            used += sizes[end]
            end += 1
    taken = end - start
    closed = (
        end < len(sizes)  # the next item does not fit
        or position + taken == max_size
        or (max_bytes is not None and used == max_bytes)
    )
    return Placement(taken, position, 0 if max_bytes is None else before, closed), end


def place(
    sizes: list[int],
    open_batch: tuple[int, int, int, int | None] | None,
    max_size: int,
    max_bytes: int | None,
) -> tuple[Placement | None, list[Placement]]:
    """Where the items of `sizes` go: first into the open batch, given as (count, bytes,
    max_batch_size, max_batch_bytes) - which may take none of them, and is then closed -
    then into new batches of the add's limits, every one but the last closed."""
    start = 0
    in_open = None
    if open_batch is not None:
        count, used, open_size, open_bytes = open_batch
        in_open, start = _place(sizes, 0, count, used, open_size, open_bytes)
    new = []
    while start < len(sizes):
        placement, start = _place(sizes, start, 0, 0, max_size, max_bytes)
        new.append(placement)
    return in_open, new
