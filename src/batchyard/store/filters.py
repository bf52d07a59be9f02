"""Conditions that lists share, written once for both dialects.

A prefix is compared with ``substr`` rather than ``LIKE``: LIKE treats ``%`` and ``_`` in
what people type as wildcards, and SQLite's LIKE ignores case where PostgreSQL's does not.
A null parameter matches everything, so one text serves a list with or without the filter.
"""

from __future__ import annotations


def under_prefix(column: str, param: str = "prefix") -> str:
    """SQL true where `column` starts with the text of ``:param`` (or that is null)."""
    text = f"CAST(:{param} AS TEXT)"
    return f"({text} IS NULL OR substr({column}, 1, length({text})) = {text})"
