"""FrameBudget: the market hub's frames per poll follow its event loop's CPU share."""

import pytest

from serve.frame_budget import (
    CUT_FACTOR,
    GROWTH_STEP,
    MAX_GROWTH,
    MAX_SHRINK,
    FrameBudget,
)

INTERVAL = 0.015


def budget(frames: float = 1_000.0, **kw) -> FrameBudget:
    return FrameBudget(poll_interval_s=INTERVAL, frames=frames, **kw)


def test_backlog_over_a_quarter_of_the_budget_cuts_it():
    b = budget()
    b.adapt(backlog=251, waiting=True, cycle_s=INTERVAL, cpu_s=0.0001)
    assert b.frames == 1_000 * CUT_FACTOR
    b = budget()
    b.adapt(backlog=250, waiting=False, cycle_s=INTERVAL)
    assert b.frames == 1_000  # at the line: kept


def test_overrun_cuts_but_time_spent_waiting_for_data_does_not():
    b = budget()
    b.adapt(backlog=0, waiting=False, cycle_s=5 * INTERVAL, idle_s=4 * INTERVAL)
    assert b.frames == 1_000
    b.adapt(backlog=0, waiting=False, cycle_s=5 * INTERVAL)
    assert b.frames == 1_000 * CUT_FACTOR


def test_cpu_over_the_share_scales_down_in_proportion_but_at_most_by_half():
    b = budget(cpu_share=0.5)
    b.adapt(backlog=0, waiting=True, cycle_s=INTERVAL, cpu_s=INTERVAL)
    assert b.frames == pytest.approx(500)
    b.adapt(backlog=0, waiting=True, cycle_s=INTERVAL, cpu_s=10 * INTERVAL)
    assert b.frames == pytest.approx(500 * MAX_SHRINK)


def test_grows_slowly_only_while_symbols_wait_and_writers_keep_up():
    b = budget(250)
    b.adapt(backlog=0, waiting=True, cycle_s=INTERVAL, cpu_s=0.1 * INTERVAL)
    assert b.frames == pytest.approx(250 * MAX_GROWTH + GROWTH_STEP)
    b = budget(250)
    b.adapt(backlog=0, waiting=False, cycle_s=INTERVAL, cpu_s=0.1 * INTERVAL)
    assert b.frames == 250  # nothing held back: no reason to grow
    b = budget(250)
    b.adapt(backlog=10, waiting=True, cycle_s=INTERVAL, cpu_s=0.1 * INTERVAL)
    assert b.frames == 250  # writers still busy


def test_a_cycle_that_followed_the_feed_has_its_period_to_spend():
    b = budget(cpu_share=0.5)
    # 1.4 intervals long, 0.4 of them waiting for data: 0.7 interval of CPU is half of it.
    b.adapt(backlog=0, waiting=True, cycle_s=1.4 * INTERVAL, cpu_s=0.7 * INTERVAL,
            idle_s=0.4 * INTERVAL)
    assert b.frames >= 1_000
    b = budget(cpu_share=0.5)
    b.adapt(backlog=0, waiting=True, cycle_s=1.4 * INTERVAL, cpu_s=0.7 * INTERVAL)
    assert b.frames == pytest.approx(1_000 * 0.5 / 0.7)  # late: only the interval counts


def test_bounds_hold():
    b = budget(1.0)
    for _ in range(5):
        b.adapt(backlog=100, waiting=True)
    assert b.frames == 1.0
    b = budget(199_990.0)
    b.adapt(backlog=0, waiting=True, cycle_s=INTERVAL, cpu_s=0.01 * INTERVAL)
    assert b.frames == 200_000.0
