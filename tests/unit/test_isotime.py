"""ISO times as the exports write them: the same text as datetime's own isoformat, whether
converted one by one or through the memo an export uses."""

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from batchyard.isotime import iso, iso_memo


def reference(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# a millisecond's ends, where the rounding to the microsecond carries
EDGES = [
    0.0,
    0.0005,
    0.0009995,
    0.0009996,
    0.9999994,
    0.9999995,
    0.9999996,
    -0.0000004,
    -0.0000005,
    -1e-9,
    1e-9,
    0.1629994,
]
EPOCHS = st.floats(min_value=-6e10, max_value=2.5e11, allow_nan=False)


@given(EPOCHS)
@example(1_764_000_000.1629994)
@example(1_000_000_000.9999995)
@example(-0.0000004)
@example(4294967295.9999996)
def test_iso_writes_what_datetime_writes(epoch):
    assert iso(epoch) == reference(epoch)


def test_iso_of_none_is_none_and_years_keep_four_digits():
    assert iso(None) is None
    assert iso(-60_000_000_000.0) == reference(-60_000_000_000.0)  # year 68: "0068-..."
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"


@given(
    st.lists(EPOCHS, max_size=50),
    st.floats(min_value=1e-7, max_value=3e-3),
    st.integers(min_value=1, max_value=400),
)
def test_the_memo_answers_as_iso_for_runs_of_near_times(starts, step, count):
    """Runs of close, rising times (as an import stamps them) with jumps between runs."""
    convert = iso_memo()
    for start in starts:
        for epoch in [start + n * step for n in range(count)]:
            assert convert(epoch) == reference(epoch)


def test_the_memo_is_exact_at_every_millisecond_edge():
    convert = iso_memo()
    for whole in (0, 1, 1_764_000_000, 4_294_967_295, -1):
        for millis in range(0, 1000, 37):
            for edge in EDGES:
                epoch = whole + millis / 1000 + edge
                assert convert(epoch) == reference(epoch), epoch
