"""The generate-embeddings job (the model itself is `batchyard.embedder`).

A generate-embeddings job embeds things' text - their `content`, or the fields named in
``options={"fields": ["data.title", "content"]}`` - in batches of ``options["batchSize"]``
(64) texts, and stores each vector with the model's name and a hash of the text: a thing
whose text did not change since its last embedding with that model is skipped.

A model pads each batch to its longest text, so a worker slot takes `GROUP_CHUNKS` chunks
of a job at once and encodes their texts sorted by length: texts of like length share a
batch (as a bare ``encode`` of a whole corpus sorts them), and each vector goes back to its
own item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.bulk.kinds import JobType
from batchyard.bulk.things import ItemError, get_things, ids_by_ns, reference
from batchyard.embedder import Embedder, unit_rows
from batchyard.errors import InvalidInput
from batchyard.store import Tx

if TYPE_CHECKING:
    import numpy as np

    from batchyard.runtime import Runtime

DEFAULT_BATCH_SIZE = 64
GROUP_CHUNKS = 5  # chunks one worker slot encodes together: 500 texts to sort by length
MAX_BATCH_SIZE = 1024
DEFAULT_FIELDS = ("content",)
MAX_FIELDS = 32
_THING_TEXT_FIELDS = frozenset({"ns", "id", "type", "content", "visibility"})


# -- the generate-embeddings job -----------------------------------------------------------


def check_options(runtime: Runtime, options: dict[str, Any]) -> None:
    """Refuse bad options, and a job that no model could run, before anything is stored."""
    fields = options.get("fields", list(DEFAULT_FIELDS))
    if (
        not isinstance(fields, list)
        or not fields
        or len(fields) > MAX_FIELDS
        or not all(isinstance(f, str) and _valid_field(f) for f in fields)
    ):
        raise InvalidInput(
            f"options.fields must be a list of 1 to {MAX_FIELDS} fields of a thing: "
            f"{', '.join(sorted(_THING_TEXT_FIELDS))} or data.<key>[.<key>...]",
            field="options.fields",
        )
    size = options.get("batchSize", DEFAULT_BATCH_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidInput(
            f"options.batchSize must be an integer from 1 to {MAX_BATCH_SIZE}",
            field="options.batchSize",
        )
    runtime.embedder  # noqa: B018 - the default model raises MissingExtra without the extra


def batch_size(options: dict[str, Any]) -> int:
    return int(options.get("batchSize", DEFAULT_BATCH_SIZE))


def embed_batch(
    runtime: Runtime, options: dict[str, Any], refs: list[dict[str, Any]]
) -> list[tuple[Any, str | None]]:
    """Read the things of `refs` (a batch, or a group of chunks), encode the texts that
    changed, and return per item the row to store (None when unchanged) or the item's
    error."""
    embedder = runtime.embedder
    fields = options.get("fields", list(DEFAULT_FIELDS))
    with runtime.store.transaction(write=False) as tx:
        things = get_things(tx, refs)
        hashes = _stored_hashes(tx, embedder.name, refs)
    outcomes: list[tuple[Any, str | None]] = []
    texts: list[str] = []
    for ref in refs:
        key = (ref["ns"], ref["id"])
        thing = things.get(key)
        if thing is None:
            outcomes.append((None, f"not found: {ref['ns']}/{ref['id']}"))
            continue
        try:
            text = text_of(thing, fields)
        except ItemError as exc:
            outcomes.append((None, str(exc)))
            continue
        digest = text_hash(text)
        if hashes.get(key) == digest:
            outcomes.append((None, None))  # embedded before, from the same text
            continue
        texts.append(text)
        outcomes.append(
            ({"ns": ref["ns"], "id": ref["id"], "model": embedder.name, "text_hash": digest}, None)
        )
    if texts:
        vectors = encode_by_length(embedder, texts, batch_size(options))
        rows = (row for row, _ in outcomes if row is not None)
        for row, vector in zip(rows, vectors, strict=True):
            row["dimension"] = embedder.dimension
            row["vector"] = vector.astype("<f4").tobytes()
    return outcomes


def encode_by_length(embedder: Embedder, texts: list[str], size: int) -> np.ndarray:
    """The unit vectors of `texts`, in their order, encoded `size` at a time longest first:
    a batch is padded to its longest text, so texts of like length together pad least."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vectors = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    for start in range(0, len(order), size):
        batch = order[start : start + size]
        encoded = embedder.encode([texts[i] for i in batch])
        vectors[batch] = unit_rows(encoded, len(batch), embedder.dimension)
    return vectors


UPSERT_EMBEDDINGS = (
    "INSERT INTO batchyard_embeddings (ns, model, id, text_hash, dimension, vector, "
    "updated_at) VALUES (:ns, :model, :id, :text_hash, :dimension, :vector, {now}) "
    "ON CONFLICT (ns, model, id) DO UPDATE SET text_hash = excluded.text_hash, "
    "dimension = excluded.dimension, vector = excluded.vector, "
    "updated_at = excluded.updated_at"
)


def store_vectors(
    runtime: Runtime, tx: Tx, options: dict[str, Any], rows: list[dict[str, Any] | None]
) -> list[tuple[Any, str | None]]:
    tx.executemany(UPSERT_EMBEDDINGS, [row for row in rows if row is not None])
    return [(None, None)] * len(rows)


def text_of(thing: dict[str, Any], fields: Sequence[str]) -> str:
    """The text to embed: the fields' values that are present, one per line (values that
    are not strings as JSON). Raises `ItemError` when that leaves nothing."""
    parts = []
    for field in fields:
        value = _value(thing, field)
        if value is None:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if text.strip():
            parts.append(text)
    if not parts:
        raise ItemError(f"no text to embed: {', '.join(fields)} empty or missing")
    return "\n".join(parts)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _value(thing: dict[str, Any], field: str) -> Any:
    if not field.startswith("data."):
        return thing.get(field)
    value: Any = thing.get("data")
    for key in field.split(".")[1:]:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _valid_field(field: str) -> bool:
    if field in _THING_TEXT_FIELDS:
        return True
    return field.startswith("data.") and all(field.split(".")[1:])


def _stored_hashes(tx: Tx, model: str, refs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    # one query per namespace: a slot's group of chunks is hundreds of things, and a lookup
    # each was a round trip each on PostgreSQL
    found = {}
    for ns, ids in ids_by_ns(refs).items():
        for row in tx.all(
            "SELECT id, text_hash FROM batchyard_embeddings "
            "WHERE ns = :ns AND model = :model AND id IN {json_text_values}",
            {"ns": ns, "model": model, "values": ids},
        ):
            found[(ns, row["id"])] = row["text_hash"]
    return found


def job_type() -> JobType:
    """generate-embeddings: embed each thing's text, store the vector (skipping unchanged
    texts); input `{"ns": ...}` stands for every thing of the namespace."""
    return JobType(
        validate=reference,
        apply=store_vectors,
        compute_batch=embed_batch,
        batch_size=batch_size,
        check_options=check_options,
        expands_namespace=True,
        group_chunks=GROUP_CHUNKS,
    )
