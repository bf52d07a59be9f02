"""Things and relationships: the data bulk jobs import and export.

A thing is (`ns`, `id`, `type`, `data`, `content`, `visibility`); a relationship links two
things, (`fromNs`, `fromId`) to (`toNs`, `toId`). Items use the JSON field names of the
batch service they come from. Both are upserted on (`ns`, `id`): importing the same item
again updates it in place, so a replayed chunk never duplicates anything.
"""

from __future__ import annotations

from typing import Any

import orjson

from batchyard.isotime import iso
from batchyard.store import Tx

MAX_KEY_LENGTH = 512


class ItemError(ValueError):
    """One item of a bulk job is invalid or failed; the message names the field."""


def _text(
    item: dict[str, Any], field: str, *, required: bool, max_length: int | None = MAX_KEY_LENGTH
) -> str | None:
    value = item.get(field)
    if (
        value.__class__ is str
        and (value or not required)
        and (max_length is None or len(value) <= max_length)
    ):
        return value  # the common case, checked first: imports validate millions of these
    if value is None:
        if required:
            raise ItemError(f"{field}: is required")
        return None
    if not isinstance(value, str):
        raise ItemError(f"{field}: must be a string, not {_kind(value)}")
    if required and not value:
        raise ItemError(f"{field}: must not be empty")
    if max_length is not None and len(value) > max_length:
        raise ItemError(f"{field}: longer than {max_length} characters")
    return value


def _data(item: dict[str, Any]) -> str:
    value = item.get("data", {})
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ItemError(f"data: must be an object, not {_kind(value)}")
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise ItemError(f"data: not JSON ({exc})") from None


def _object(item: Any, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ItemError(f"item: must be an object, not {_kind(item)}")
    if item.keys() <= fields:
        return item
    unknown = sorted(set(item) - fields)
    if unknown:
        raise ItemError(f"{unknown[0]}: unknown field (expected {', '.join(sorted(fields))})")
    return item


THING_FIELDS = frozenset({"ns", "id", "type", "data", "content", "visibility"})
RELATIONSHIP_FIELDS = frozenset({"ns", "id", "type", "fromNs", "fromId", "toNs", "toId", "data"})
REFERENCE_FIELDS = frozenset({"ns", "id"})


def thing_row(item: Any) -> dict[str, Any]:
    """Validate an import-things item into a row, or raise `ItemError` naming the field."""
    item = _object(item, THING_FIELDS)
    return {
        "ns": _text(item, "ns", required=True),
        "id": _text(item, "id", required=True),
        "type": _text(item, "type", required=False),
        "data": _data(item),
        "content": _text(item, "content", required=False, max_length=None),
        "visibility": _text(item, "visibility", required=False),
    }


def relationship_row(item: Any) -> dict[str, Any]:
    item = _object(item, RELATIONSHIP_FIELDS)
    return {
        "ns": _text(item, "ns", required=True),
        "id": _text(item, "id", required=True),
        "type": _text(item, "type", required=True),
        "from_ns": _text(item, "fromNs", required=True),
        "from_id": _text(item, "fromId", required=True),
        "to_ns": _text(item, "toNs", required=True),
        "to_id": _text(item, "toId", required=True),
        "data": _data(item),
    }


def reference(item: Any) -> dict[str, Any]:
    """An item naming one thing: {ns, id}."""
    item = _object(item, REFERENCE_FIELDS)
    return {"ns": _text(item, "ns", required=True), "id": _text(item, "id", required=True)}


UPSERT_THINGS = (
    "INSERT INTO batchyard_things (ns, id, type, data, content, visibility, created_at, "
    "updated_at) VALUES (:ns, :id, :type, :data, :content, :visibility, {now}, {now}) "
    "ON CONFLICT (ns, id) DO UPDATE SET type = excluded.type, data = excluded.data, "
    "content = excluded.content, visibility = excluded.visibility, "
    "updated_at = excluded.updated_at"
)

UPSERT_RELATIONSHIPS = (
    "INSERT INTO batchyard_relationships (ns, id, type, from_ns, from_id, to_ns, to_id, data, "
    "created_at, updated_at) VALUES (:ns, :id, :type, :from_ns, :from_id, :to_ns, :to_id, "
    ":data, {now}, {now}) ON CONFLICT (ns, id) DO UPDATE SET type = excluded.type, "
    "from_ns = excluded.from_ns, from_id = excluded.from_id, to_ns = excluded.to_ns, "
    "to_id = excluded.to_id, data = excluded.data, updated_at = excluded.updated_at"
)

THING_COLUMNS = "ns, id, type, data, content, visibility, created_at, updated_at"


def upsert_things(tx: Tx, rows: list[dict[str, Any]]) -> None:
    tx.executemany(UPSERT_THINGS, rows)


def get_things(tx: Tx, refs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The records of the referenced things that exist, by (ns, id): one query per
    namespace, the ids passed as one JSON array."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for ns, ids in ids_by_ns(refs).items():
        for row in tx.all(
            f"SELECT {THING_COLUMNS} FROM batchyard_things WHERE ns = :ns "
            "AND id IN {json_text_values}",
            {"ns": ns, "values": ids},
        ):
            found[(row["ns"], row["id"])] = record(row)
    return found


def ids_by_ns(refs: list[dict[str, Any]]) -> dict[str, str]:
    """The ids of `refs` by namespace, each namespace's as one JSON array (bound as
    ``:values`` of the ``{json_text_values}`` fragment): a query per namespace, not per id."""
    ids: dict[str, list[str]] = {}
    for ref in refs:
        ids.setdefault(ref["ns"], []).append(ref["id"])
    return {ns: orjson.dumps(each).decode() for ns, each in ids.items()}


def record(row: Any) -> dict[str, Any]:
    """A thing as JSON: the import's field names, ISO-8601 times."""
    return {
        "ns": row["ns"],
        "id": row["id"],
        "type": row["type"],
        "data": orjson.loads(row["data"]),
        "content": row["content"],
        "visibility": row["visibility"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
