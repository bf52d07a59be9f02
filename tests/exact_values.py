"""JSON-like values for the property tests of "an item is accepted only if it is delivered
exactly as given": a strategy, the rule written out independently of batchyard's, and an
equality that also compares types (1 == 1.0 == True in Python, but not here)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

INT_MIN, INT_MAX = -(2**63), 2**64 - 1
EDGE_INTS = [
    INT_MIN - 1,
    INT_MIN,
    -1,
    0,
    2**53 + 1,
    2**63 - 1,
    2**63,
    INT_MAX,
    INT_MAX + 1,
    10**100,
    -(10**100),
]

# any character, lone surrogates included, with the awkward ones often
text = st.text(
    st.characters(exclude_categories=())
    | st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "é", "😀"]),
    max_size=8,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(EDGE_INTS)
    | st.floats()
    | st.sampled_from([0.0, -0.0, 1e308, 5e-324])
    | text
)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


def storable(value: Any) -> bool:
    """The rule: 64-bit integers, finite floats, UTF-8-encodable strings and keys."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT_MIN <= value <= INT_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, list):
        return all(map(storable, value))
    assert isinstance(value, dict)
    return all(_utf8(key) and storable(child) for key, child in value.items())


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def points_at_a_problem(value: Any, path: tuple[Any, ...] | list[Any]) -> bool:
    """Whether `path` leads to a part of `value` the rule refuses: a leaf, or a key."""
    node = value
    for n, step in enumerate(path):
        if isinstance(node, dict) and isinstance(step, str) and not _utf8(step):
            return n == len(path) - 1 and step in node  # the bad key itself
        node = node[step]
    return not isinstance(node, (list, dict)) and not storable(node)


def same(given: Any, got: Any) -> bool:
    """Equal, with the same types all the way down (and -0.0 kept apart from 0.0)."""
    if type(given) is not type(got):
        return False
    if isinstance(given, float):
        return given == got and math.copysign(1, given) == math.copysign(1, got)
    if isinstance(given, list):
        return len(given) == len(got) and all(map(same, given, got))
    if isinstance(given, dict):
        return list(given) == list(got) and all(same(given[k], got[k]) for k in given)
    return bool(given == got)
