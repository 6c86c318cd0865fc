"""pipelines.iv_surface: sessions a TickRecorder wrote become one surface, in process (no Ray).

Quotes are priced by vollib at a flat volatility per underlying, so every recovered
implied volatility is known; the job's own work is finding the sessions, skipping those
still being written, joining each session's rows and writing the outputs.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pytest
from polars.testing import assert_frame_equal
from vollib.black_scholes_merton import black_scholes_merton as vollib_price

from core.errors import InvalidInput, NotFound
from core.storage import Storage
from market.feeds.base import (
    QUOTE,
    BarBatch,
    FeedBatch,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
)
from market.feeds.recorder import TickRecorder
from market.greeks import time_to_expiry
from pipelines.iv_surface import add_arguments, run, run_alpaca, run_from_args

MINUTE_NS = 60 * 10**9
START = 1_795_500_000 * 10**9 // MINUTE_NS * MINUTE_NS  # a weekday afternoon, UTC
MINUTES = 2
EXPIRY = date(2026, 12, 18)
RATE, DIVIDEND = 0.04, 0.01
# underlying -> (spot, flat volatility, strikes)
BOOKS = {"XYZ": (100.0, 0.20, np.arange(90.0, 111.0, 5.0)),
         "ABC": (50.0, 0.35, np.arange(45.0, 56.0, 2.5)),
         "QQQ": (400.0, 0.15, np.arange(390.0, 411.0, 10.0))}


def _chain(underlying: str) -> OptionContracts:
    strikes = BOOKS[underlying][2]
    names = [f"{underlying}{EXPIRY:%y%m%d}{flag}{round(k * 1000):08d}"
             for k in strikes for flag in ("C", "P")]
    n = len(names)
    return OptionContracts(underlying=underlying, contract=names,
                           expiration=np.full(n, np.datetime64(EXPIRY, "D")),
                           strike=np.repeat(strikes, 2), is_call=np.tile([True, False], n // 2),
                           open_interest=np.full(n, 100, dtype=np.int64))


def _record(root: Path, session: str, underlying: str, *, stock: bool = True) -> None:
    """Record ``MINUTES`` minutes of one underlying's stock and option quotes."""
    spot, vol, _ = BOOKS[underlying]
    chain = _chain(underlying)
    recorder = TickRecorder(root, session=session)
    recorder.write(FeedBatch(TickBatch.empty(), OptionTickBatch.empty(), BarBatch.empty(),
                             {underlying: chain}), [underlying], warmup=True)
    for minute in range(MINUTES):
        ts = START + minute * MINUTE_NS + 5 * 10**9
        # the pipeline prices at the minute's end, so the quotes are priced there too
        years = float(time_to_expiry(np.asarray([EXPIRY], "datetime64[D]"),
                                     START + (minute + 1) * MINUTE_NS)[0])
        prices = np.array([vollib_price("c" if call else "p", spot, k, years, RATE, vol,
                                        DIVIDEND)
                           for k, call in zip(chain.strike, chain.is_call, strict=True)])
        n = len(prices)
        options = OptionTickBatch.from_columns(
            kind=np.full(n, QUOTE), symbol_id=np.zeros(n), contract_index=np.arange(n),
            ts_ns=np.full(n, ts), price=np.full(n, np.nan), size=np.full(n, np.nan),
            bid=prices, ask=prices, bid_size=np.ones(n), ask_size=np.ones(n))
        ticks = TickBatch.from_columns(
            kind=[QUOTE], symbol_id=[0], ts_ns=[ts - 10**9], price=[np.nan], size=[np.nan],
            bid=[spot - 0.01], ask=[spot + 0.01], bid_size=[1.0], ask_size=[1.0]
        ) if stock else TickBatch.empty()
        recorder.write(FeedBatch(ticks, options, BarBatch.empty(), {}), [underlying])
    recorder.close()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recordings")
    _record(root, "s1", "XYZ")
    _record(root, "s2", "ABC")
    _record(root, ".s3", "QQQ")  # a session still being written
    _record(root, "s4", "QQQ", stock=False)  # option quotes without a spot: nothing to price
    return root


def test_each_session_recovers_its_own_volatility_and_prices(recordings, tmp_path):
    contracts, expiries, manifest = run(recordings, tmp_path / "out", rate=RATE,
                                        dividend=DIVIDEND, use_ray=False)

    assert sorted(contracts["underlying"].unique()) == ["ABC", "XYZ"]  # not .s3's nor s4's
    assert contracts.height == MINUTES * (len(_chain("XYZ")) + len(_chain("ABC")))
    for row in contracts.iter_rows(named=True):
        spot, vol, _ = BOOKS[row["underlying"]]
        assert row["spot"] == pytest.approx(spot)
        assert row["implied_volatility"] == pytest.approx(vol, abs=1e-5)
        # and the row's own figures reprice its quote, whatever the time convention
        flag = "c" if row["is_call"] else "p"
        assert vollib_price(flag, row["spot"], row["strike"], row["time_to_expiry"], RATE,
                            row["implied_volatility"], DIVIDEND) == pytest.approx(
            row["mid"], abs=1e-6)
    assert expiries.height == 2 * MINUTES  # one expiration per underlying and minute
    for row in expiries.iter_rows(named=True):
        assert row["atm_iv"] == pytest.approx(BOOKS[row["underlying"]][1], abs=1e-5)
        assert row["skew_25d"] == pytest.approx(0.0, abs=1e-5)  # a flat smile has no skew
    assert manifest["config"]["sessions"] == 3
    assert manifest["rows"] == contracts.height
    assert manifest["config"]["source"] == {"kind": "recordings"}
    assert (manifest["config"]["rate"], manifest["config"]["dividend"]) == (RATE, DIVIDEND)


def test_outputs_on_disk_equal_what_run_returns(recordings, tmp_path):
    contracts, expiries, manifest = run(recordings, tmp_path / "out", rate=RATE,
                                        dividend=DIVIDEND, use_ray=False)

    assert_frame_equal(pl.read_parquet(tmp_path / "out" / "contracts.parquet"), contracts)
    assert_frame_equal(pl.read_parquet(tmp_path / "out" / "expiries.parquet"), expiries)
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert written["job"] == "iv_surface"
    assert written["rows"] == manifest["rows"]
    assert written["config"]["ray"] is False


def test_a_session_alone_gives_the_rows_it_gives_among_others(recordings, tmp_path):
    _record(tmp_path / "alone", "s1", "XYZ")
    together, _, _ = run(recordings, rate=RATE, dividend=DIVIDEND, use_ray=False)

    alone, _, manifest = run(tmp_path / "alone", rate=RATE, dividend=DIVIDEND, use_ray=False)

    assert manifest["config"]["sessions"] == 1
    assert_frame_equal(alone, together.filter(pl.col("underlying") == "XYZ"))


def test_no_sessions_is_not_found(tmp_path):
    (tmp_path / "empty" / ".partial" / "option_ticks").mkdir(parents=True)

    with pytest.raises(NotFound, match="no recording sessions"):
        run(tmp_path / "empty", use_ray=False)
    with pytest.raises(NotFound):
        run(tmp_path / "missing", use_ray=False)


def test_the_alpaca_source_needs_somewhere_to_keep_fetched_days():
    with pytest.raises(InvalidInput, match="needs out or inputs"):
        run_alpaca(None, ["AAPL"], "2025-06-02", "2025-06-06", use_ray=False)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_command_line_runs_the_job_and_prints_its_summary(recordings, tmp_path, capsys):
    code = run_from_args(_args("--recordings", str(recordings), "--out", str(tmp_path / "o"),
                               "--rate", str(RATE), "--dividend", str(DIVIDEND), "--no-ray"))

    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["contract_minutes"] == pl.read_parquet(
        tmp_path / "o" / "contracts.parquet").height == MINUTES * (
        len(_chain("XYZ")) + len(_chain("ABC")))
    assert summary["expiry_rows"] == 2 * MINUTES
    assert "fetch" not in summary


@pytest.mark.parametrize(("argv", "message"), [
    ((), "--recordings is needed"),
    (("--source", "alpaca", "--underlyings", "AAPL"), "needs --underlyings, --start and --end"),
])
def test_command_line_without_its_inputs_exits_2(argv, message, tmp_path, capsys):
    code = run_from_args(_args(*argv, "--out", str(tmp_path / "o")))

    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_missing_recordings_folder_exits_2_with_the_error(tmp_path, capsys):
    code = run_from_args(_args("--recordings", str(tmp_path / "nope"), "--out",
                               str(tmp_path / "o"), "--no-ray"))

    assert code == 2
    assert capsys.readouterr().err.startswith("error: no recording sessions")


def _bucket(local: Path) -> Storage:
    """Return an in-memory object store holding a copy of the tree ``local``."""
    bucket = Storage("bucket/recordings", filesystem=pafs._MockFileSystem())
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        bucket.write_bytes(file.relative_to(local).as_posix(), file.read_bytes())
    return bucket


@pytest.mark.parametrize("kind", ["file_uri", "memory"])
def test_recordings_and_outputs_at_a_uri_or_in_an_object_store_give_the_same_surface(
        recordings, tmp_path, kind):
    contracts, expiries, manifest = run(recordings, tmp_path / "local", rate=RATE,
                                        dividend=DIVIDEND, use_ray=False)
    if kind == "file_uri":
        source, out = f"file://{recordings}", Storage(f"file://{tmp_path}/out")
    else:
        source = _bucket(recordings)
        out = source / "surface"

    there, there_expiries, there_manifest = run(source, out if kind == "memory" else
                                                out.location, rate=RATE, dividend=DIVIDEND,
                                                use_ray=False)

    assert there_manifest["config"]["sessions"] == 3  # .s3 is still skipped
    assert_frame_equal(there, contracts)
    assert_frame_equal(there_expiries, expiries)
    with out.open_input("contracts.parquet") as written:
        assert_frame_equal(pl.read_parquet(written), contracts)
    with out.open_input("expiries.parquet") as written:
        assert_frame_equal(pl.read_parquet(written), expiries)
    assert json.loads(out.read_text("manifest.json"))["rows"] == contracts.height
    if kind == "file_uri":
        assert there_manifest["data_version"] == manifest["data_version"]
    else:
        assert there_manifest["data_version"] not in (None, manifest["data_version"])


def test_the_alpaca_source_keeps_fetched_days_on_a_local_path():
    with pytest.raises(InvalidInput, match="--inputs"):
        run_alpaca("s3://bucket/surface", ["XYZ"], "2025-06-02", "2025-06-02",
                   use_ray=False)
