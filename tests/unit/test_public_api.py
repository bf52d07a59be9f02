import batchyard

PUBLIC = """
AddResult AggregatorRun AggregatorStatus Backpressure BatchContext BatchInfo BatchStatus
BatchyardError Clock ConfigError Conflict FlushContext FlushReason FlushRecord FlushResult
HandlerNotFound InvalidInput ItemFailures IteratorStatus LeaseLost ManualClock NotFound Page
ParkedEvent Producer ProducerError ProducerStats RetryPolicy StoreCorrupt StoreError StoreFull
StoreReadOnly StoreUnavailable SystemClock Yard
__version__ folds open_store
""".split()  # noqa: SIM905 - one name per word reads better here


def test_public_names_are_pinned():
    assert batchyard.__all__ == sorted(batchyard.__all__)
    assert set(batchyard.__all__) == set(PUBLIC)
    for name in batchyard.__all__:
        assert hasattr(batchyard, name), name
