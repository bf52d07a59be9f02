import batchyard


def test_public_names_are_pinned():
    assert batchyard.__all__ == sorted(batchyard.__all__)
    assert set(batchyard.__all__) == {
        "AddResult", "AggregatorRun", "AggregatorStatus", "Backpressure", "BatchInfo",
        "BatchStatus", "BatchyardError", "Clock",
        "ConfigError", "Conflict", "FlushContext", "FlushReason", "FlushRecord",
        "FlushResult", "HandlerNotFound", "InvalidInput", "ItemFailures", "LeaseLost",
        "ManualClock", "NotFound", "ParkedEvent", "Producer", "ProducerError", "ProducerStats",
        "RetryPolicy", "StoreError", "SystemClock", "Yard",
        "__version__", "folds", "open_store",
    }
    for name in batchyard.__all__:
        assert hasattr(batchyard, name), name
