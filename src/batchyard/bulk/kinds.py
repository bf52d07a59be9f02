"""Bulk job types: what each kind of bulk job validates and does with a chunk of items.

A type's callables take the runtime (the handlers, the embedder, the store), never the
service. The built-in types are here; generate-embeddings is declared by
`batchyard.bulk.embeddings`, which the service registers beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.bulk.things import (
    UPSERT_RELATIONSHIPS,
    UPSERT_THINGS,
    ItemError,
    get_things,
    reference,
    relationship_row,
    thing_row,
)
from batchyard.errors import InvalidInput
from batchyard.signals import RetryLater
from batchyard.store import Tx

if TYPE_CHECKING:
    from batchyard.runtime import Runtime


@dataclass(frozen=True)
class JobType:
    """A bulk job type: how an item is validated, and how a chunk of valid items is done.

    `compute` runs user code outside the transaction, item by item (an exception is that
    item's error); `compute_batch` does the same for `batch_size(options)` items at once
    (a model that works on batches) and returns, for each, (value, error or None). A kind
    with `group_chunks` above 1 is handed up to that many chunks of one job at once, and
    its `compute_batch` then gets all their items in one call and batches them itself (a
    model that sorts its texts by length to pad less wins with more texts to sort). `apply`
    runs inside the chunk's transaction and returns, for each item, (result or None, error
    or None)."""

    validate: Callable[[Any], Any]
    apply: Callable[[Runtime, Tx, dict[str, Any], list[Any]], list[tuple[Any, str | None]]]
    compute: Callable[[Runtime, dict[str, Any], Any], Any] | None = None
    compute_batch: (
        Callable[[Runtime, dict[str, Any], list[Any]], list[tuple[Any, str | None]]] | None
    ) = None
    batch_size: Callable[[dict[str, Any]], int] = lambda options: 1
    check_options: Callable[[Runtime, dict[str, Any]], None] = lambda runtime, options: None
    expands_namespace: bool = False  # `input={"ns": ...}` stands for every thing in ns
    group_chunks: int = 1

    @property
    def computes(self) -> bool:
        return self.compute is not None or self.compute_batch is not None

    def run_compute(
        self, runtime: Runtime, options: dict[str, Any], items: list[Any]
    ) -> list[tuple[Any, str | None]]:
        if self.compute_batch is not None:
            outcomes = self.compute_batch(runtime, options, items)
            if len(outcomes) != len(items):  # the chunk fails rather than loses items
                raise RuntimeError(
                    f"compute_batch returned {len(outcomes)} outcomes for {len(items)} items"
                )
            return outcomes
        assert self.compute is not None
        outcomes = []
        for item in items:
            try:
                outcomes.append((self.compute(runtime, options, item), None))
            except RetryLater:
                raise
            except Exception as exc:
                outcomes.append((None, item_error(exc)))
        return outcomes


def _import_things(runtime: Runtime, tx: Tx, options: dict[str, Any], rows: list[Any]) -> list[Any]:
    tx.executemany(UPSERT_THINGS, rows)
    return [(None, None)] * len(rows)


def _import_relationships(
    runtime: Runtime, tx: Tx, options: dict[str, Any], rows: list[Any]
) -> list[Any]:
    tx.executemany(UPSERT_RELATIONSHIPS, rows)
    return [(None, None)] * len(rows)


def _export_things(runtime: Runtime, tx: Tx, options: dict[str, Any], refs: list[Any]) -> list[Any]:
    found = get_things(tx, refs)
    return [
        (found[key], None)
        if (key := (ref["ns"], ref["id"])) in found
        else (None, f"not found: {ref['ns']}/{ref['id']}")
        for ref in refs
    ]


def _transform_options(runtime: Runtime, options: dict[str, Any]) -> None:
    name = options.get("transform")
    if not isinstance(name, str) or not name:
        raise InvalidInput(
            "options.transform must name a registered transform", field="options.transform"
        )
    if _transform_handler(name) not in runtime.handlers:
        raise InvalidInput(
            f"options.transform: no transform registered as {name!r}", field="options.transform"
        )
    target = options.get("outputNs")
    if target is not None and (not isinstance(target, str) or not target):
        raise InvalidInput("options.outputNs must be a non-empty string", field="options.outputNs")


def _transform(runtime: Runtime, options: dict[str, Any], item: Any) -> Any:
    output = runtime.handlers.call(_transform_handler(options["transform"]), item)
    if options.get("outputNs") is not None:  # the output is a thing of the target namespace
        if not isinstance(output, dict):
            raise ItemError("the transform's output must be an object with an id")
        return thing_row({**output, "ns": options["outputNs"]})
    orjson.dumps(output)  # a result must be JSON: fail the item here, not the chunk later
    return output


def _store_outputs(
    runtime: Runtime, tx: Tx, options: dict[str, Any], outputs: list[Any]
) -> list[Any]:
    if options.get("outputNs") is None:
        return [(output, None) for output in outputs]
    tx.executemany(UPSERT_THINGS, outputs)
    return [(None, None)] * len(outputs)


def _json_item(item: Any) -> Any:
    try:
        orjson.dumps(item)
    except TypeError as exc:
        raise ItemError(f"item: not JSON ({exc})") from None
    return item


def _transform_handler(name: str) -> str:
    return f"transform:{name}"


def builtin_types() -> dict[str, JobType]:
    """The job types every yard has; generate-embeddings is the embeddings module's."""
    return {
        "import-things": JobType(validate=thing_row, apply=_import_things),
        "import-relationships": JobType(validate=relationship_row, apply=_import_relationships),
        "export-things": JobType(validate=reference, apply=_export_things, expands_namespace=True),
        "transform-data": JobType(
            validate=_json_item,
            apply=_store_outputs,
            compute=_transform,
            check_options=_transform_options,
        ),
    }


def item_error(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ItemError) else f"{type(exc).__name__}: {exc}"
