import dataclasses
import importlib.metadata
import re
import tomllib
import typing
from pathlib import Path

import pytest

import batchyard
from batchyard import errors, signals
from batchyard.yard import Yard

PUBLIC = """
AddResult AggregatorRun AggregatorStatus AsyncYard Backpressure BatchInfo BatchItem BatchPage
BatcherInfo BatcherStatus BatcherSummary
BatchStatus BatchyardError BulkItemError BulkItemResult BulkJob BulkJobStats BulkJobStatus
BulkJobSubmission Clock
ConfigError Conflict DeadChunk DiscardResult Embedder FlushContext FlushReason FlushRecord
FlushResult FlushTotals Fold HandlerLoad HandlerNotFound InvalidInput ItemFailures IteratorError
IteratorStatus
LeaseLost
ManualClock MissingExtra NotFound Page PageContext ParkedEvent Producer ProducerError
ProducerStats RetryLater RetryPolicy SearchHit SliceStatus Store StoreCorrupt StoreError StoreFull
StoreReadOnly StoreUnavailable SystemClock WebhookDelivery Worker Yard __version__ folds open_store
""".split()  # noqa: SIM905 - one name per word reads better here

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_public_names_are_pinned():
    assert batchyard.__all__ == sorted(batchyard.__all__)
    assert set(batchyard.__all__) == set(PUBLIC)
    for name in batchyard.__all__:
        assert hasattr(batchyard, name), name


def _batchyard_classes(hint: object) -> set[type]:
    """The batchyard classes a type hint names, inside unions and generics too."""
    found = set()
    for arg in typing.get_args(hint):
        found |= _batchyard_classes(arg)
    if isinstance(hint, type) and hint.__module__.startswith("batchyard."):
        found.add(hint)
    return found


def _yard_signature_classes() -> dict[type, str]:
    """Every batchyard class in the hints of Yard's public methods (its constructor and
    properties included), and in the fields of the records they take or return."""
    found: dict[type, str] = {}
    members: dict[str, object] = {}
    for part in reversed(Yard.__mro__[:-1]):  # the facade's parts, then Yard's own
        members.update(vars(part))
    for name, member in members.items():
        if name.startswith("_") and name != "__init__":
            continue
        function = member.fget if isinstance(member, property) else member
        if not callable(function):
            continue
        for hint in typing.get_type_hints(function).values():
            for cls in _batchyard_classes(hint):
                found.setdefault(cls, f"Yard.{name}")
    for cls, where in list(found.items()):
        if dataclasses.is_dataclass(cls) or hasattr(cls, "model_fields"):
            for hint in typing.get_type_hints(cls).values():
                for field_cls in _batchyard_classes(hint):
                    found.setdefault(field_cls, f"{cls.__name__} (from {where})")
    return found


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("BatchContext", "PageContext"),
        ("BatchJobRecord", "BulkJob"),
        ("BatchStats", "BulkJobStats"),
        ("JobError", "BulkItemError"),
        ("JobResult", "BulkItemResult"),
        ("JobStatus", "BulkJobStatus"),
    ],
)
def test_names_of_the_first_release_still_import_with_a_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"batchyard.{old} is now batchyard.{new}"):
        assert getattr(batchyard, old) is getattr(batchyard, new)
    assert old not in batchyard.__all__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        batchyard.Nope  # noqa: B018


def test_every_class_of_a_yard_signature_is_exported():
    classes = _yard_signature_classes()
    # the walk reaches returns, constructor arguments and record fields
    assert {"FlushResult", "Store", "BulkJobStatus"} <= {cls.__name__ for cls in classes}
    missing = {
        cls.__name__: where
        for cls, where in classes.items()
        if getattr(batchyard, cls.__name__, None) is not cls or cls.__name__ not in PUBLIC
    }
    assert missing == {}


def _exceptions(module: object) -> dict[str, type]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }


def test_every_exception_and_signal_is_exported():
    classes = _exceptions(errors) | _exceptions(signals)
    assert {"BatchyardError", "StoreError", "ItemFailures", "RetryLater"} <= classes.keys()
    missing = {
        name
        for name, cls in classes.items()
        if getattr(batchyard, name, None) is not cls or name not in PUBLIC
    }
    assert missing == set()


def test_the_error_tree_drawn_in_errors_names_every_exception():
    drawn = re.findall(r"^\s*(?:[│ ]*[├└]── )?(\w+)  ", errors.__doc__ or "", re.MULTILINE)
    drawn_tree = {name for name in drawn if name[0].isupper()} | {"BatchyardError"}
    assert drawn_tree == _exceptions(errors).keys()


def test_the_version_is_the_one_in_pyproject():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert "version" not in project.get("dynamic", [])
    assert batchyard.__version__ == importlib.metadata.version("batchyard")
    assert batchyard.__version__ == project["version"]


# Yard's members that AsyncYard leaves to the Yard: set-up done once at start (registering
# handlers, aggregators, batchers, an embedder), running a worker or a producer (threads of
# their own), a stream of bytes (export), and what is plain data (`now`, ids, the secret).
SYNC_ONLY = {
    "aio",
    "close",
    "embedder",
    "export_to_format",
    "now",
    "producer",
    "register_aggregator",
    "register_batcher",
    "run_worker",
    "transform",
    "use_embedder",
    "webhook_secret",
    "worker",
    "worker_id",
}


def test_async_yard_has_every_verb_of_the_yard():
    verbs = set()
    for part in Yard.__mro__[:-1]:
        verbs |= {name for name in vars(part) if not name.startswith("_")}
    assert {name for name in verbs if not hasattr(batchyard.AsyncYard, name)} == SYNC_ONLY
