"""pipelines._report: one self-contained HTML page; what it plots is read back from the axes."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pandas as pd
import polars as pl
import pytest
from matplotlib.axes import Axes

from pipelines._report import MAX_POINTS, _thin, backtest_report

matplotlib.use("Agg")


def _summary(rng: np.random.Generator) -> pl.DataFrame:
    rows = [{"symbol": s, "fast": f, "slow": w, "sharpe": float(rng.normal())}
            for s in ("AAA", "BBB") for f in (5, 10, 15) for w in (30, 50)]
    rows[0]["sharpe"] = float("nan")  # a run without trades: skipped in means, ranked last
    return pl.DataFrame(rows)


def _equity(lengths: dict[int, int]) -> pl.DataFrame:
    frames = []
    for rank, n in lengths.items():
        curve = 1.0 + np.cumsum(np.full(n, 0.001 * rank))
        frames.append(pl.DataFrame({
            "rank": np.full(n, rank, dtype=np.int64), "symbol": ["AAA"] * n,
            "fast": np.full(n, 5 * rank), "slow": np.full(n, 30),
            "timestamp": pl.Series(1_735_828_200 * 10**9 + np.arange(n, dtype=np.int64)
                                   * 60 * 10**9).cast(pl.Datetime("ns", "UTC")),
            "equity": curve, "drawdown": curve / np.maximum.accumulate(curve) - 1.0}))
    return pl.concat(frames)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Record what the report hands matplotlib's plot and imshow."""
    seen: dict[str, list] = {"plot": [], "imshow": []}
    plot, imshow = Axes.plot, Axes.imshow

    def record_plot(self, *args, **kwargs):
        seen["plot"].append((args, kwargs))
        return plot(self, *args, **kwargs)

    def record_imshow(self, cells, *args, **kwargs):
        seen["imshow"].append(np.array(cells))
        return imshow(self, cells, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", record_plot)
    monkeypatch.setattr(Axes, "imshow", record_imshow)
    return seen


def test_thin_keeps_short_curves_whole_and_long_ones_with_both_ends():
    short = _thin(MAX_POINTS)
    long = _thin(10 * MAX_POINTS + 7)

    np.testing.assert_array_equal(short, np.arange(MAX_POINTS))
    assert len(long) == MAX_POINTS
    assert long[0] == 0
    assert long[-1] == 10 * MAX_POINTS + 6
    assert np.all(np.diff(long) > 0)


def test_report_is_self_contained_and_escapes_what_it_quotes(drawn):
    page = backtest_report(_summary(np.random.default_rng(1)), _equity({1: 50, 2: 50}),
                           ["fast", "slow"], strategy="<script>alert(1)</script>",
                           rank_by="sharpe")

    assert page.startswith("<!doctype html>")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<svg") == 2  # equity + drawdown, then the heatmap
    assert "12 runs (2 symbols); best by sharpe." in page


def test_equity_curves_are_thinned_and_labelled_by_rank_and_parameters(drawn):
    backtest_report(_summary(np.random.default_rng(2)), _equity({1: 5 * MAX_POINTS, 2: 40}),
                    ["fast", "slow"], strategy="sma_cross", rank_by="sharpe")

    equity_lines = [(args, kwargs) for args, kwargs in drawn["plot"] if "label" in kwargs]
    drawdown_lines = [args for args, kwargs in drawn["plot"] if "label" not in kwargs]
    assert [kwargs["label"] for _, kwargs in equity_lines] == [
        "#1 AAA (fast=5, slow=30)", "#2 AAA (fast=10, slow=30)"]
    assert [len(args[1]) for args, _ in equity_lines] == [MAX_POINTS, 40]
    first_times, first_equity = equity_lines[0][0]
    curve = 1.0 + np.cumsum(np.full(5 * MAX_POINTS, 0.001))
    assert first_equity[0] == curve[0]
    assert first_equity[-1] == curve[-1]  # thinning keeps the final equity
    assert len(first_times) == MAX_POINTS
    assert all(np.all(args[1] <= 0) for args in drawdown_lines)  # drawdown in percent, <= 0


def test_heatmap_cells_are_the_mean_over_symbols_ignoring_nan(drawn):
    summary = _summary(np.random.default_rng(3))

    backtest_report(summary, _equity({1: 10}), ["fast", "slow"], strategy="s",
                    rank_by="sharpe")

    (cells,) = drawn["imshow"]
    # independently: pandas' pivot table, whose mean skips NaN
    expected = pd.pivot_table(summary.to_pandas(), values="sharpe", index="slow",
                              columns="fast", aggfunc="mean")
    np.testing.assert_allclose(cells, expected.to_numpy(), rtol=1e-12)
    assert cells.shape == (2, 3)  # rows: slow, columns: fast


def test_no_heatmap_for_one_parameter_or_a_single_value_and_no_curves_without_equity(drawn):
    summary = _summary(np.random.default_rng(4))
    one_slow = summary.filter(pl.col("slow") == 30)

    single = backtest_report(summary, pl.DataFrame(), ["fast"], strategy="s", rank_by="sharpe")
    flat = backtest_report(one_slow, pl.DataFrame(), ["fast", "slow"], strategy="s",
                           rank_by="sharpe")

    assert "<svg" not in single
    assert "<svg" not in flat
    assert drawn["plot"] == []
    assert drawn["imshow"] == []


def test_top_runs_table_is_sorted_by_the_metric_with_nan_last_and_capped_at_20():
    rng = np.random.default_rng(5)
    summary = pl.DataFrame({"symbol": ["AAA"] * 30, "fast": np.arange(30),
                            "sharpe": rng.normal(size=30)})
    summary = summary.with_columns(
        pl.when(pl.col("fast") == 7).then(float("nan")).otherwise(pl.col("sharpe"))
        .alias("sharpe"))

    page = backtest_report(summary, pl.DataFrame(), ["fast"], strategy="s", rank_by="sharpe")

    header, *rows = _table_rows(page.split("<h2>Top runs</h2>", 1)[1])
    best = summary.filter(pl.col("fast") != 7).sort("sharpe", descending=True).head(20)
    assert header == ["symbol", "fast", "sharpe"]
    assert [int(row[1]) for row in rows] == best["fast"].to_list()
    np.testing.assert_allclose([float(row[2]) for row in rows], best["sharpe"].to_numpy(),
                               rtol=1e-3)  # printed with four significant digits


def _table_rows(page: str) -> list[list[str]]:
    """Return the first HTML table's rows as cell texts (header row first)."""
    rows: list[list[str]] = []

    class Cells(HTMLParser):
        inside = False

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            self.inside = tag in ("td", "th")

        def handle_endtag(self, tag):
            self.inside = False

        def handle_data(self, data):
            if self.inside and data.strip():
                rows[-1].append(data.strip())

    Cells().feed(page.split("</table>", 1)[0])
    return rows
