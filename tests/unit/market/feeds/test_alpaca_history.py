"""RequestPacer on a simulated clock, and how a 429's wait is read."""

from __future__ import annotations

import numpy as np
import pytest
from requests import Response

from market.feeds.alpaca_history import RequestPacer, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _max_in_any_window(times: list[float], window: float) -> int:
    stamps = np.array(times)
    return int((np.searchsorted(stamps, stamps + window - 1e-9) - np.arange(len(stamps))).max())


@pytest.mark.parametrize(("limit", "window_s"), [(200, 60.0), (10, 1.0), (3, 2.0)])
def test_pacer_never_lets_more_than_the_limit_into_a_window(limit, window_s):
    clock = Clock()
    pacer = RequestPacer(limit, window_s, clock=clock, sleep=clock.sleep)
    times, own_pauses = [], 0.0
    for i in range(5 * limit):
        pacer.acquire()
        times.append(clock.now)
        if i % 7 == 3:
            clock.sleep(window_s / limit * 0.5)  # the caller's own pauses
            own_pauses += window_s / limit * 0.5

    assert _max_in_any_window(times, window_s) <= limit
    # and no slower than the burst, then the sustained rate (limit - burst) / window
    sustained_s = (5 * limit - pacer.burst) * window_s / (limit - pacer.burst)
    assert times[-1] - times[0] <= sustained_s + own_pauses + 1e-6


def test_pause_holds_every_request_until_it_ends():
    clock = Clock()
    pacer = RequestPacer(200, 60.0, clock=clock, sleep=clock.sleep)
    pacer.acquire()
    pacer.pause(7.5)

    pacer.acquire()

    assert clock.now == pytest.approx(1_007.5)
    assert pacer.waited_s == pytest.approx(7.5)


def test_pacer_refuses_a_limit_it_cannot_keep():
    with pytest.raises(ValueError, match="at least 2"):
        RequestPacer(1, 60.0)


def _response(**headers: str) -> Response:
    response = Response()
    response.status_code = 429
    response.headers.update(headers)
    return response


def test_retry_after_reads_seconds_dates_and_the_reset_header():
    assert retry_after_s(_response(**{"Retry-After": "2.5"})) == 2.5
    date = "Wed, 21 Oct 2015 07:28:10 GMT"  # 1445412490 in epoch seconds
    assert retry_after_s(_response(**{"Retry-After": date}),
                         wall=lambda: 1445412480.0) == pytest.approx(10.0)
    assert retry_after_s(_response(**{"X-RateLimit-Reset": "1700000012"}),
                         wall=lambda: 1700000000.5) == pytest.approx(11.5)
    assert retry_after_s(_response()) is None
    assert retry_after_s(_response(**{"X-RateLimit-Reset": "1"}), wall=lambda: 5.0) == 0.0
