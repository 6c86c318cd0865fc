"""RequestPacer and PacedAdapter on a simulated clock, and how a 429's wait is read."""

from __future__ import annotations

import io

import numpy as np
import pytest
from requests import PreparedRequest, Request, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError

from market.feeds.alpaca_history import (
    TIMEOUT_S,
    HistoryRequestError,
    PacedAdapter,
    RequestPacer,
    RequestStats,
    retry_after_s,
)


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
    response.raw = io.BytesIO(b"")
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


class Scripted(PacedAdapter):
    """PacedAdapter over a scripted transport: each send takes the next answer."""

    def __init__(self, answers: list[object], clock: Clock, **kwargs: object) -> None:
        pacer = RequestPacer(200, 60.0, clock=clock, sleep=clock.sleep)
        super().__init__(pacer, RequestStats(), sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]
        self.answers = answers
        self.timeouts: list[object] = []

    def _transport(self, request, **kwargs):
        self.timeouts.append(kwargs.get("timeout"))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _adapter(answers: list[object], clock: Clock, monkeypatch, **kwargs) -> Scripted:
    adapter = Scripted(answers, clock, **kwargs)
    monkeypatch.setattr(HTTPAdapter, "send", lambda self, request, **kw: self._transport(
        request, **kw))
    return adapter


def _ok() -> Response:
    response = Response()
    response.status_code = 200
    response.raw = io.BytesIO(b"")
    return response


def _request() -> PreparedRequest:
    return Request("GET", "http://127.0.0.1:1/v2/stocks/bars?symbols=AAPL").prepare()


def test_adapter_retries_a_network_error_and_a_503_with_backoff(monkeypatch):
    clock = Clock()
    failed = _response()
    failed.status_code = 503
    adapter = _adapter([RequestsConnectionError("reset"), failed, _ok()], clock, monkeypatch,
                       backoff_s=0.5)

    response = adapter.send(_request())

    assert response.status_code == 200
    assert clock.now == pytest.approx(1_000.0 + 0.5 + 1.0)  # 0.5 s, then doubled
    assert adapter.stats.as_dict()["network_errors"] == 1
    assert adapter.stats.as_dict()["server_errors_5xx"] == 1
    assert adapter.timeouts == [TIMEOUT_S] * 3  # alpaca-py sends none: never wait forever


def test_adapter_pauses_the_pacer_on_429_and_raises_when_refusals_persist(monkeypatch):
    clock = Clock()
    adapter = _adapter([_response(**{"Retry-After": "4"}) for _ in range(3)], clock,
                       monkeypatch, retries=2)

    with pytest.raises(HistoryRequestError, match="429 on each of 3 tries") as caught:
        adapter.send(_request())

    assert caught.value.http_status == 429
    assert clock.now == pytest.approx(1_008.0)  # two waits of 4 s, the third 429 is final
    assert adapter.stats.as_dict()["throttled_429"] == 3
