"""Choosing the feed from the settings; each implementation is imported only when chosen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import FeedError
from core.settings import Settings
from market.feeds import make_feed
from market.feeds.sim import SimulatedFeed


def test_sim_settings_give_the_simulator_with_their_symbols() -> None:
    feed = make_feed(Settings(feed="sim", symbols="AAPL,MSFT", sim_seed=9))

    assert isinstance(feed, SimulatedFeed)
    assert feed.symbols == ("AAPL", "MSFT")
    assert feed.seed == 9


def test_replay_settings_read_the_named_folder_and_refuse_one_without_a_recording(
        tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="no recording found under") as info:
        make_feed(Settings(feed="replay", replay_dir=str(tmp_path), symbols="SPY"))

    assert str(tmp_path) in str(info.value)


def test_an_unknown_feed_is_refused() -> None:
    settings = Settings().model_copy(update={"feed": "carrier-pigeon"})

    with pytest.raises(ValueError, match="carrier-pigeon"):
        make_feed(settings)


def test_choosing_the_simulator_does_not_import_alpaca() -> None:
    code = ("import sys; from core.settings import Settings; from market.feeds import make_feed;"
            "make_feed(Settings(feed='sim'));"
            "print(any(m.startswith('alpaca') for m in sys.modules))")
    root = Path(__file__).resolve().parents[4]

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True, env={"MARKETRAY_FEED": "sim", "PATH": ""})

    assert out.stdout.strip() == "False"
