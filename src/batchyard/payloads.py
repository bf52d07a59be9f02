"""The JSON we store: user values encoded exactly, and what would not come back equal refused.

Items, events and bulk-job input are kept as JSON text and read back with orjson, so a value
is accepted only when that round trip gives back an equal value of the same types:

- integers from -2**63 to 2**64 - 1 (orjson reads a larger one back as a rounded float);
- strings and object keys that UTF-8 can encode (not a lone surrogate such as ``"\\ud800"``);
- object keys that are strings (``{1: "a"}`` would come back as ``{"1": "a"}``, and would
  collide with a key ``"1"``);
- finite floats (NaN and the infinities have no JSON form; ``-0.0`` stays ``-0.0``);
- nesting up to 254 levels (what orjson writes).

Lists and tuples both become JSON arrays and come back as lists; subclasses of str, int and
float come back as the plain type they equal. Anything else is refused with `NotStorable`,
which says where inside the value the problem is; callers name the item around it.

Checking costs nothing in the common case: orjson encodes the value, and only when it refuses
(or writes a ``null`` that may stand for a NaN) is the value walked to find the cause.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from batchyard.errors import InvalidInput

Path = tuple[str | int, ...]

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson writes, and reads back as an int
MAX_DEPTH = 254  # levels of arrays and objects orjson writes

# dates, dataclasses and str/int subclasses are made to fail in orjson, so that the walk and
# the strict stdlib encoder judge them (orjson would write dates and dataclasses as objects
# or strings that come back as something else)
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# strict JSON: NaN and Infinity are refused, not written as null
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class NotStorable(ValueError):
    """A value that batchyard cannot store exactly; `path` leads to the bad part."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(self.at(""))

    def at(self, where: str) -> str:
        """The message, with the path written after `where` (``items[3]`` ->
        ``items[3].user.ids[2]: integer ... is outside ...``)."""
        return f"{where}{dotted(self.path)}: {self.reason}".lstrip(".")


def dotted(path: Path) -> str:
    """``("user", "ids", 2)`` -> ``.user.ids[2]``; keys that are not plain names are quoted
    (ASCII-escaped, so that even a lone surrogate prints)."""
    parts = []
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif step.isascii() and step.isidentifier():
            parts.append(f".{step}")
        else:
            parts.append(f"[{json.dumps(step)}]")
    return "".join(parts)


def encode(value: Any) -> str:
    """`value` as JSON text that reads back equal, or `NotStorable`."""
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return _encode_slowly(value)
    if "null" in text:  # a NaN or an infinity is written as null too (searched in the str,
        try:  # several times faster than in the bytes)
            _ENCODER.encode(value)
        except ValueError:
            _raise_problem(value)
    return text


def _encode_slowly(value: Any) -> str:
    _raise_problem(value)
    # nothing wrong: str or int subclasses, which the stdlib encoder writes as their value
    return _ENCODER.encode(value)


def _raise_problem(value: Any) -> None:
    problem = find_problem(value)
    if problem is not None:
        raise problem


def encode_items(items: Iterable[Any], field: str = "items") -> list[str]:
    """Items as JSON text; a value that cannot be stored exactly is refused with
    `InvalidInput` naming its index and the path inside it (``items[3].user.ids[2]: ...``)."""
    if type(items) is not list and not isinstance(items, tuple):  # (a list: the fast test)
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
            raise InvalidInput(f"{field} must be a list of JSON values", field=field)
        items = list(items)  # read twice below when an item is bad
    try:
        if len(items) == 1:  # the most common call, without a comprehension's frame
            return [encode(items[0])]
        return [encode(item) for item in items]
    except NotStorable:
        pass  # find the bad item again, to name it
    encoded = []
    for index, item in enumerate(items):
        try:
            encoded.append(encode(item))
        except NotStorable as exc:
            raise refused(exc, field, index) from None
    return encoded


def refused(problem: NotStorable, field: str, index: int | None = None) -> InvalidInput:
    """The `InvalidInput` for a problem found in `field` (or in its item `index`)."""
    where = field if index is None else f"{field}[{index}]"
    return InvalidInput(problem.at(where), field=field, index=index, path=problem.path)


def refusals(values: Sequence[Any]) -> dict[int, NotStorable]:
    """The problems of the values that cannot be stored exactly, by index: one orjson call
    for the whole list when all is well, as most lists are."""
    try:
        if "null" not in orjson.dumps(values, option=_ORJSON_OPTIONS).decode():
            return {}
    except TypeError:
        pass
    found = {}
    for index, value in enumerate(values):
        try:
            encode(value)
        except NotStorable as exc:
            found[index] = exc
    return found


def find_problem(value: Any) -> NotStorable | None:
    """The first part of `value` (in document order) that cannot be stored exactly, if any.
    A walk of the value: slow, so only run once orjson has refused it."""
    stack: list[tuple[Any, Path]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        reason = None
        if isinstance(node, NotStorable):  # a bad key, met in its place in the document
            return node
        if node is None or node is True or node is False:
            continue
        if isinstance(node, str):
            reason = _text_problem(node, "string")
        elif isinstance(node, int):
            if not INT_MIN <= node <= INT_MAX:
                reason = (
                    f"integer {_int_text(node)} is outside the 64-bit range batchyard "
                    "stores exactly"
                )
        elif isinstance(node, float):
            if not math.isfinite(node):
                reason = f"float {node!r} is not JSON (NaN and infinities have no JSON form)"
        elif isinstance(node, (dict, list, tuple)):
            if len(path) >= MAX_DEPTH:
                reason = f"nested deeper than {MAX_DEPTH} levels (or holds itself)"
            elif isinstance(node, dict):
                children = []
                for key, child in node.items():
                    if not isinstance(key, str):
                        children.append(
                            (NotStorable(path, f"object key {key!r} is not a string"), path)
                        )
                        continue
                    key_problem = _text_problem(key, "object key")
                    if key_problem is not None:
                        children.append((NotStorable((*path, key), key_problem), path))
                        continue
                    children.append((child, (*path, key)))
                stack.extend(reversed(children))
            else:
                stack.extend((node[i], (*path, i)) for i in reversed(range(len(node))))
        else:
            reason = f"{type(node).__name__} is not a JSON value"
        if reason is not None:
            return NotStorable(path, reason)
    return None


def _text_problem(text: str, what: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"{what} is not valid UTF-8 (a lone surrogate "
            f"{ascii(text[exc.start])[1:-1]} at character {exc.start})"
        )
    return None


def _int_text(number: int) -> str:
    # str() of a huge integer is slow, and refused past 4,300 digits
    return str(number) if number.bit_length() <= 1024 else f"of {number.bit_length()} bits"
