"""Byte ranges of a file source: where a file can be cut so that every record falls in
exactly one range.

Cuts are wanted at even byte offsets and made at the first record start at or after each,
so a range ``[offset, end)`` holds whole records: those whose first byte lies in it, the
last being the record that crosses the even offset (the next range starts where it ends).
The records are found by reading forward from a point known to be a record start (the
first record after the header, or a slice's cursor), never by looking back for a newline.
A CSV field in quotes may hold newlines, and only a reading from a record start can tell a
newline inside a field from one between records - so multi-line CSV fields are cut
correctly, at the cost of reading the range once (a count of its records, which progress
needs anyway).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

# what reading a file gives a cut, one record (or blank line) at a time:
# (bytes it spans, lines it spans, whether it is a record rather than a blank line)
Unit = tuple[int, int, bool]
# (the file at a record start, the number of lines before it, the bytes to read)
Units = Callable[[IO[bytes], int, int], Iterator[Unit]]


@dataclass(frozen=True)
class Range:
    offset: int  # of its first byte, a record start (or a blank line before one)
    line: int  # lines before `offset`, for the line numbers in error messages
    end: int  # the next range's offset, or the end of what was cut
    records: int


def line_units(file: IO[bytes], line: int, length: int) -> Iterator[Unit]:
    """The lines of an NDJSON file; blank lines hold no record."""
    if length <= 0:
        return
    taken = 0
    for raw in file:  # (iterating is faster than readline; nothing here asks for tell())
        size = len(raw)
        yield size, 1, bool(raw.strip())
        taken += size
        if taken >= length:
            return


def csv_rows(
    file: IO[bytes], line: int, length: int, delimiter: str
) -> Iterator[tuple[int, int, list[str]]]:
    """The records of a CSV file as (bytes, lines, fields); an empty line has no fields.
    The csv module reads no further than the record it returns, so the bytes read when a
    record comes back are exactly up to where the next one starts."""
    taken, lines = [0], [line]

    def text() -> Iterator[str]:
        while taken[0] < length:
            raw = file.readline()
            if not raw:
                return
            taken[0] += len(raw)
            lines[0] += 1
            # bad bytes are the page's to report, with the line; a cut only counts
            yield raw.decode("utf-8-sig" if lines[0] == 1 else "utf-8", "replace")

    mark, seen = 0, line
    for row in csv.reader(text(), delimiter=delimiter):
        yield taken[0] - mark, lines[0] - seen, row
        mark, seen = taken[0], lines[0]


def csv_units(delimiter: str) -> Units:
    def units(file: IO[bytes], line: int, length: int) -> Iterator[Unit]:
        for size, lines, row in csv_rows(file, line, length, delimiter):
            yield size, lines, bool(row)

    return units


def cut(units: Iterator[Unit], offset: int, line: int, end: int, parts: int) -> list[Range]:
    """Cut ``[offset, end)`` (`units` reads it from `offset`) into at most `parts` ranges
    of about equal bytes, each starting at the first record start at or after its even
    offset and holding at least one record; none when it holds no record at all."""
    # the targets still ahead, nearest last; the loop runs once per line of a big file, so
    # it keeps to local names
    targets = [offset + (end - offset) * i // parts for i in range(parts - 1, 0, -1)]
    starts: list[list[int]] = []  # offset, line, records of each range before this one
    here, here_line, records = offset, line, 0  # the range being read
    position, target = offset, targets.pop() if targets else end + 1
    for size, lines, record in units:
        if position >= target and position > here:
            starts.append([here, here_line, records])
            here, here_line, records = position, line, 0
            while targets and targets[-1] <= position:
                targets.pop()  # a long record may pass several targets: one cut for them
            target = targets.pop() if targets else end + 1
        records += record
        position += size
        line += lines
    starts.append([here, here_line, records])
    # a range of blank lines only is folded into the one before it (the first one into the
    # one after it, which then starts where the first did)
    kept = [start for start in starts if start[2]]
    if not kept:
        return []
    if kept[0] is not starts[0]:
        kept[0] = [offset, starts[0][1], kept[0][2]]
    ends = [start[0] for start in kept[1:]] + [end]
    return [
        Range(offset=o, line=n, end=e, records=r) for (o, n, r), e in zip(kept, ends, strict=True)
    ]
