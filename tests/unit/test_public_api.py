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
AddResult AggregatorRun AggregatorStatus Backpressure BatchInfo BatchItem BatchPage
BatchStatus BatchyardError BulkItemError BulkItemResult BulkJob BulkJobStats BulkJobStatus
BulkJobSubmission Clock
ConfigError Conflict DeadChunk DiscardResult Embedder FlushContext FlushReason FlushRecord
FlushResult Fold HandlerNotFound InvalidInput ItemFailures IteratorError IteratorStatus LeaseLost
ManualClock MissingExtra NotFound Page PageContext ParkedEvent Producer ProducerError
ProducerStats RetryLater RetryPolicy SearchHit Store StoreCorrupt StoreError StoreFull
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
    for name, member in vars(Yard).items():
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
