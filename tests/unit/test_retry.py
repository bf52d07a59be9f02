import random

import pytest

from batchyard import RetryPolicy


def test_backoff_doubles_and_is_capped_without_jitter():
    policy = RetryPolicy(max_attempts=8, base_delay=1, max_delay=10, jitter=0)
    assert [policy.next_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]


def test_last_attempt_means_dead_letter():
    policy = RetryPolicy(max_attempts=3)
    assert policy.next_delay(2) is not None
    assert policy.next_delay(3) is None
    assert policy.next_delay(4) is None


def test_jitter_stays_within_its_fraction_and_varies():
    policy = RetryPolicy(max_attempts=10, base_delay=4, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.next_delay(1, rng) for _ in range(200)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"factor": 0.5}, {"jitter": 1.0}]
)
def test_bad_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
