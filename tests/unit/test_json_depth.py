"""How deep a JSON text nests, and which content types are JSON: pure functions."""

from __future__ import annotations

import json

import pytest

from batchyard.http.limits import is_json, json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[{"', 0),
        ("[]", 1),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ("[[], [[]], []]", 3),
        ('["]]]]", "[[[[", "\\"[["]', 1),
        ('{"k\\\\": [[]]}', 3),
        ("[" * 1000 + "]" * 1000, 1000),
    ],
)
def test_json_depth(text, depth):
    assert json_depth(text.encode()) == depth


def test_json_depth_agrees_with_the_parser_on_nested_values():
    value = {"a": [{"b": "][}{"}, [[1, 'x\\"]']]], "c": {"d": {}}}
    assert json_depth(json.dumps(value).encode()) == 4


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/problem+json", True),
        ("APPLICATION/JSON", True),
        ("text/json", False),
        ("application/jsonl", False),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_is_json(content_type, expected):
    assert is_json(content_type) is expected
