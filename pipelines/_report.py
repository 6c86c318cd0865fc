"""Self-contained HTML reports: matplotlib figures inlined as SVG, no scripts, no CDN."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence

import numpy as np
import polars as pl

MAX_POINTS = 2_000  # per curve: a year of minute bars would make a 10 MB page


def _svg(figure: object) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _thin(n: int) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).astype(np.int64))


def _label(row: dict[str, object], names: Sequence[str]) -> str:
    params = ", ".join(f"{n}={row[n]}" for n in names)
    return f"#{row['rank']} {row['symbol']} ({params})"


def backtest_report(summary: pl.DataFrame, equity: pl.DataFrame, names: Sequence[str], *,
                    strategy: str, rank_by: str) -> str:
    """Return report.html: the best runs' equity and drawdown, a heatmap for 2-D grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [f"<h1>Backtest: {html.escape(strategy)}</h1>",
             f"<p>{summary.height} runs ({summary['symbol'].n_unique()} symbols); "
             f"best by {html.escape(rank_by)}.</p>"]
    if equity.height:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True,
                                          gridspec_kw={"height_ratios": [2, 1]})
        for (rank,), curve in equity.partition_by("rank", as_dict=True,
                                                  maintain_order=True).items():
            keep = _thin(curve.height)
            first = curve.row(0, named=True)
            label = _label(first, names)
            times = curve["timestamp"].to_numpy()[keep]
            top.plot(times, curve["equity"].to_numpy()[keep], lw=1, label=label)
            bottom.plot(times, 100 * curve["drawdown"].to_numpy()[keep], lw=1)
            del rank
        top.set_ylabel("equity")
        top.legend(fontsize=7, loc="upper left")
        top.set_title("Equity of the best runs")
        bottom.set_ylabel("drawdown %")
        fig.autofmt_xdate()
        parts.append(_svg(fig))
        plt.close(fig)
    if len(names) >= 2:
        x_name, y_name = names[0], names[1]
        grid = (summary.group_by(x_name, y_name).agg(pl.col(rank_by).fill_nan(None).mean())
                .sort(x_name, y_name))
        xs = sorted(grid[x_name].unique().to_list())
        ys = sorted(grid[y_name].unique().to_list())
        if len(xs) > 1 and len(ys) > 1:
            cells = np.full((len(ys), len(xs)), np.nan)
            for x, y, value in grid.iter_rows():
                cells[ys.index(y), xs.index(x)] = np.nan if value is None else value
            fig, axis = plt.subplots(figsize=(8, 6))
            image = axis.imshow(cells, origin="lower", aspect="auto", cmap="RdYlGn")
            axis.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=90, fontsize=7)
            axis.set_yticks(range(len(ys)), [str(y) for y in ys], fontsize=7)
            axis.set_xlabel(x_name)
            axis.set_ylabel(y_name)
            axis.set_title(f"mean {rank_by} over symbols" + (
                f" ({', '.join(names[2:])} pooled)" if len(names) > 2 else ""))
            fig.colorbar(image, ax=axis)
            parts.append(_svg(fig))
            plt.close(fig)
    top_rows = summary.sort(pl.col(rank_by).fill_nan(None), descending=True,
                            nulls_last=True).head(20)
    parts.append("<h2>Top runs</h2>" + top_rows.to_pandas().to_html(
        index=False, float_format=lambda v: f"{v:.4g}"))
    body = "\n".join(parts)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>backtest report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "table{border-collapse:collapse;font-size:12px}td,th{padding:2px 6px;"
            "border-bottom:1px solid #ddd}</style></head><body>" + body + "</body></html>\n")
