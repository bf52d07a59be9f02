"""The file sources: NDJSON and CSV files read from a byte offset kept in the cursor.

A resumed job seeks straight to where it stopped. Like the SQL bound, the file's size at the
start is the end of the job (lines appended later are not chased), and the first page
counts the records once so that progress has a total and an ETA. A line that cannot be read
fails the step with an error naming the file and line; the checkpoint stays before it.

A job started with ``parallelism`` cuts the file into byte ranges at record starts (see
`ranges`): each slice's cursor is the offset of its next record and the end of its range; a
CSV file's header is read once, by the cut, and kept in every slice's cursor.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import orjson

from batchyard.errors import InvalidInput
from batchyard.iterator.records import Page
from batchyard.sources import ranges
from batchyard.sources.sliced import Sliced

if TYPE_CHECKING:
    from batchyard.yard import Yard


def ndjson_file(yard: Yard, name: str, path: str | os.PathLike[str]) -> str:
    """Register a source over a file of one JSON value per line (blank lines skipped)."""
    path = _readable(path)

    def records(file: IO[bytes], cursor: dict[str, Any]) -> Iterator[tuple[int, Any]]:
        line = cursor["line"]
        while file.tell() < cursor["end"]:
            raw = file.readline()
            line += 1
            if raw.strip():
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput(
                        f"{path}, line {line}: not valid JSON ({exc})", line=line
                    ) from None
                yield line, value

    def count(file: IO[bytes]) -> int:
        return sum(1 for raw in file if raw.strip())

    def begin() -> dict[str, Any]:
        return {"offset": 0, "line": 0, "end": os.path.getsize(path), "header": None}

    pages = _file_pages(path, records, count)
    yard.handler(name)(_sliceable(path, pages, ranges.line_units, begin))
    return name


def csv_file(yard: Yard, name: str, path: str | os.PathLike[str], *, delimiter: str = ",") -> str:
    """Register a source over a CSV file with a header row; items are dicts by header."""
    path = _readable(path)

    def records(file: IO[bytes], cursor: dict[str, Any]) -> Iterator[tuple[int, Any]]:
        consumed = [cursor["line"]]

        def lines() -> Iterator[str]:
            # csv reads no further than the record it returns, so the file position after a
            # record is exactly where the next one starts
            while file.tell() < cursor["end"]:
                raw = file.readline()
                consumed[0] += 1
                yield raw.decode("utf-8-sig" if consumed[0] == 1 else "utf-8")

        reader = csv.reader(lines(), delimiter=delimiter)
        header = cursor.get("header")
        for row in reader:
            if not row:
                continue
            if header is None:
                header = cursor["header"] = row
                continue
            if len(row) != len(header):
                raise InvalidInput(
                    f"{path}, line {consumed[0]}: {len(row)} fields where the "
                    f"header has {len(header)}",
                    line=consumed[0],
                )
            yield consumed[0], dict(zip(header, row, strict=True))

    def count(file: IO[bytes]) -> int:
        text = (raw.decode("utf-8", "replace") for raw in file)
        return max(0, sum(1 for row in csv.reader(text, delimiter=delimiter) if row) - 1)

    def begin() -> dict[str, Any]:
        """The whole file but its header, which a cut reads once for every slice."""
        size = os.path.getsize(path)
        offset, line = 0, 0
        with open(path, "rb") as file:
            for taken, lines, row in ranges.csv_rows(file, 0, size, delimiter):
                offset, line = offset + taken, line + lines
                if row:
                    return {"offset": offset, "line": line, "end": size, "header": row}
        return {"offset": size, "line": line, "end": size, "header": None}

    pages = _file_pages(path, records, count)
    yard.handler(name)(_sliceable(path, pages, ranges.csv_units(delimiter), begin))
    return name


Records = Callable[[IO[bytes], dict[str, Any]], Iterator[tuple[int, Any]]]


def _file_pages(
    path: str, records: Records, count: Callable[[IO[bytes]], int]
) -> Callable[[Any, int], Page]:
    def next_batch(cursor: dict[str, Any] | None, batch_size: int) -> Page:
        if cursor is None:  # the first page: fix the end and count the records once
            cursor = {"offset": 0, "line": 0, "end": os.path.getsize(path), "header": None}
            with open(path, "rb") as file:  # a count, not a parse: bad lines fail their page
                cursor["total"] = count(file)
        if os.path.getsize(path) < cursor["end"]:
            raise InvalidInput(f"{path} is shorter than when the job started", field="path")
        items: list[Any] = []
        line = cursor["line"]
        with open(path, "rb") as file:
            file.seek(cursor["offset"])
            for line, item in records(file, cursor):  # noqa: B007 - the last line is kept
                items.append(item)
                if len(items) == batch_size:
                    break
            offset = file.tell()
        next_cursor = {**cursor, "offset": offset, "line": line}
        return Page(
            items=items, cursor=next_cursor, done=offset >= cursor["end"], total=cursor["total"]
        )

    return next_batch


def _sliceable(
    path: str,
    pages: Callable[[Any, int], Page],
    units: ranges.Units,
    begin: Callable[[], dict[str, Any]],
) -> Sliced:
    """`pages` with a cut into byte ranges: of the whole file (`begin`) or of what is left
    after a slice's cursor, each range's cursor with the count of its records."""

    def cut(cursor: dict[str, Any] | None, parts: int) -> list[tuple[Any, int]]:
        start = begin() if cursor is None else cursor
        if os.path.getsize(path) < start["end"]:
            raise InvalidInput(f"{path} is shorter than when the job started", field="path")
        with open(path, "rb") as file:
            file.seek(start["offset"])
            pieces = ranges.cut(
                units(file, start["line"], start["end"] - start["offset"]),
                start["offset"],
                start["line"],
                start["end"],
                parts,
            )
        if not pieces:  # no record left: nothing to run (or, for a slice, to give away)
            return [] if cursor is None else [(cursor, 0)]
        return [
            (
                {**start, "offset": p.offset, "line": p.line, "end": p.end, "total": p.records},
                p.records,
            )
            for p in pieces
        ]

    return Sliced(pages, cut)


def _readable(path: str | os.PathLike[str]) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidInput(f"no such file: {path}", field="path")
    return path
