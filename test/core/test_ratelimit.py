"""Log throttling (irstd_ros/core/ratelimit.py): the pipeline's and the tracker's."""

from __future__ import annotations

from irstd_ros.core.ratelimit import RateLimiter


def test_rate_limiter_allows_once_per_period_per_key():
    now = [0.0]
    limiter = RateLimiter(1.0, clock=lambda: now[0])
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")  # keys are independent
    now[0] = 0.999
    assert not limiter.allow("a")
    now[0] = 1.0  # exactly one period later: allowed again
    assert limiter.allow("a")


def test_rate_limiter_denied_calls_do_not_restart_the_period():
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0])
    assert limiter.allow("k")
    for t in (0.5, 1.0, 1.5, 1.9):
        now[0] = t
        assert not limiter.allow("k")
    now[0] = 2.0
    assert limiter.allow("k")
    now[0] = 3.0
    assert not limiter.allow("k")  # the period restarted at 2.0, the last allowed call


def test_rate_limiter_zero_period_never_throttles():
    limiter = RateLimiter(0.0, clock=lambda: 100.0)
    assert all(limiter.allow("k") for _ in range(5))
