"""Statements about the quote, trend and momentum, volume, levels and patterns.

Indicators are the snapshot's (``market.incremental``: RSI(14), MACD(12, 26, 9),
20-bar SMA/EMA, slow stochastic (5, 3, 3), ADX(14), Bollinger (20, 2), ATR(14),
session VWAP), computed on 1-minute bars. Levels, volume against past sessions and
patterns come from :func:`market.analysis.price_volume_summary` and
:func:`market.patterns.detect_patterns` over the last session of bars.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rag.answers.facts import (
    Statement,
    Writer,
    fixed,
    money,
    number,
    plural,
    side,
    whole,
    zone,
)

OVERBOUGHT, OVERSOLD = 70.0, 30.0
STOCH_HIGH, STOCH_LOW = 80.0, 20.0
ADX_STRONG, ADX_WEAK = 25.0, 20.0
UNUSUAL_RVOL = 2.0


def price(w: Writer) -> Statement:
    """Last price, the day's change and range."""
    last = w.number("price")
    if last is None:
        return w.missing("price", "the last price")
    text = f"{w.symbol} last traded at {w.market_q('price', last, money(last))}"
    change = w.number("change_percent")
    if change is not None:
        shown = w.market_q("change_percent", change, f"{abs(change):.2f}%",
                           ("up", "down", "change", "day"))
        text += f", {'up' if change >= 0 else 'down'} {shown} on the day"
        previous = w.number("previous_close")
        if previous is not None:
            shown = w.market_q("previous_close", previous, money(previous), ("close",))
            text += f" from the previous close of {shown}"
    low, high = w.number("low"), w.number("high")
    if low is not None and high is not None:
        text += (f"; the day's range is {w.market_q('low', low, money(low), ('range',))}"
                 f" to {w.market_q('high', high, money(high), ('range',))}")
    return w.done("price", text + ".")


def rsi(w: Writer) -> Statement:
    """RSI(14) against the 70/30 lines."""
    value = w.indicator("rsi_14")
    if value is None:
        return w.missing("rsi", "RSI(14)")
    shown = w.indicator_q("rsi_14", value, fixed(value, 1), ("rsi",))
    meaning = {
        "above": f"above the usual overbought line of {OVERBOUGHT:.0f}: overbought",
        "below": f"below the usual oversold line of {OVERSOLD:.0f}: oversold",
        "between": (f"between the oversold line of {OVERSOLD:.0f} and the overbought line of "
                    f"{OVERBOUGHT:.0f}: neither overbought nor oversold"),
    }[zone(value, OVERSOLD, OVERBOUGHT)]
    return w.done("rsi", f"{w.symbol}'s RSI(14) is {shown}, {meaning}.")


def stochastic(w: Writer) -> Statement:
    """Slow stochastic %K/%D against 80/20."""
    k, d = w.indicator("stoch_k"), w.indicator("stoch_d")
    if k is None:
        return w.missing("stochastic", "the stochastic oscillator")
    shown = w.indicator_q("stoch_k", k, fixed(k, 1), ("stochastic", "%k"))
    text = f"{w.symbol}'s slow stochastic %K is {shown}"
    if d is not None:
        text += f" (%D {w.indicator_q('stoch_d', d, fixed(d, 1), ('%d',))})"
    text += {
        "above": f", above {STOCH_HIGH:.0f}: overbought territory",
        "below": f", below {STOCH_LOW:.0f}: oversold territory",
        "between": f", between {STOCH_LOW:.0f} and {STOCH_HIGH:.0f}: mid-range",
    }[zone(k, STOCH_LOW, STOCH_HIGH)]
    return w.done("stochastic", text + ".")


def macd(w: Writer) -> Statement:
    """MACD line against its signal line."""
    line, signal, hist = w.indicator("macd"), w.indicator("macd_signal"), w.indicator("macd_hist")
    if line is None or signal is None:
        return w.missing("macd", "MACD")
    relation = side(line, signal)
    mood = ("bullish momentum" if line > signal else "bearish momentum" if line < signal
            else "no momentum either way")
    shown_line = w.indicator_q("macd", line, fixed(line, 4), ("macd",))
    shown_signal = w.indicator_q("macd_signal", signal, fixed(signal, 4), ("signal",))
    text = (f"{w.symbol}'s MACD(12, 26, 9) line is {shown_line}, {relation} its signal line "
            f"at {shown_signal}")
    if hist is not None:
        shown = w.indicator_q("macd_hist", hist, fixed(hist, 4), ("histogram",))
        text += f" (histogram {shown})"
    return w.done("macd", f"{text}: {mood}.")


def moving_average(w: Writer) -> Statement:
    """Price against the 20-bar SMA and EMA."""
    last = w.number("price")
    sma, ema = w.indicator("sma_20"), w.indicator("ema_20")
    if last is None or (sma is None and ema is None):
        return w.missing("moving_average", "the moving averages")
    parts = []
    for key, value, label in (("sma_20", sma, "SMA"), ("ema_20", ema, "EMA")):
        if value is None:
            continue
        where = side(last, value)
        shown = w.indicator_q(key, value, money(value), (label.lower(), "average"))
        parts.append(f"{where} its 20-bar {label} of {shown}")
    shown_price = w.market_q("price", last, money(last))
    return w.done("moving_average", f"At {shown_price}, {w.symbol} is " + " and ".join(parts)
                  + (": an uptrend on this time frame" if sma is not None and last > sma
                     else ": a downtrend on this time frame" if sma is not None and last < sma
                     else "") + ".")


def adx(w: Writer) -> Statement:
    """ADX(14) trend strength."""
    value = w.indicator("adx_14")
    if value is None:
        return w.missing("adx", "ADX(14)")
    shown = w.indicator_q("adx_14", value, fixed(value, 1), ("adx",))
    if value >= ADX_STRONG:
        meaning = f"above {ADX_STRONG:.0f}: a strong trend"
    elif value >= ADX_WEAK:
        meaning = f"between {ADX_WEAK:.0f} and {ADX_STRONG:.0f}: a trend that is forming"
    else:
        meaning = f"below {ADX_WEAK:.0f}: no clear trend"
    return w.done("adx", f"{w.symbol}'s ADX(14) is {shown}, {meaning}.")


def bollinger(w: Writer) -> Statement:
    """Bollinger band edges and where the price sits."""
    upper, lower, last = w.indicator("bb_upper"), w.indicator("bb_lower"), w.number("price")
    if upper is None or lower is None or last is None:
        return w.missing("bollinger", "the Bollinger bands")
    where = ("above the upper band" if last > upper else "below the lower band"
             if last < lower else "inside the bands")
    low = w.indicator_q("bb_lower", lower, money(lower), ("lower", "band"))
    high = w.indicator_q("bb_upper", upper, money(upper), ("upper", "band"))
    return w.done("bollinger", f"{w.symbol}'s Bollinger bands (20, 2) run from {low} to "
                  f"{high}; the price is {where}.")


def vwap(w: Writer) -> Statement:
    """Price against the session VWAP."""
    value, last = w.indicator("vwap"), w.number("price")
    if value is None or last is None:
        return w.missing("vwap", "the session VWAP")
    where = side(last, value)
    shown = w.indicator_q("vwap", value, money(value), ("vwap",))
    return w.done("vwap", f"{w.symbol} is {where} its session VWAP of {shown} by "
                  f"{abs(last / value - 1.0) * 100.0:.2f}%.")


def atr(w: Writer) -> Statement:
    """ATR(14) per bar."""
    value = w.indicator("atr_14")
    if value is None:
        return w.missing("atr", "ATR(14)")
    shown = w.indicator_q("atr_14", value, money(value), ("atr", "range"))
    return w.done("atr", f"{w.symbol}'s ATR(14) is {shown} per 1-minute bar.")


def realized_vol(w: Writer) -> Statement:
    """Realised volatility of the last session's 1-minute returns, annualised."""
    vols = w.analysis.get("realized_volatility") or {}
    value = number(vols.get("390_bars")) if isinstance(vols, Mapping) else None
    if value is None:
        return w.missing("realized_vol", "the realised volatility")
    shown = w.q("realized_volatility", value, f"{value * 100:.2f}%",
                "analysis.realized_volatility.390_bars", ("realised", "realized", "volatility"),
                fraction=True)
    return w.done("realized_vol", f"{w.symbol}'s realised volatility over the last 390 "
                  f"one-minute bars is {shown}, annualised.")


def levels(w: Writer) -> Statement:
    """Strongest support below and resistance above, and the volume point of control."""
    found = w.analysis.get("levels") or {}
    parts = []
    for kind in ("support", "resistance"):
        rows = [r for r in found.get(kind) or [] if isinstance(r, Mapping)]
        if not rows:
            parts.append(f"no {kind} level in the recent bars")
            continue
        level = float(rows[0]["price"])
        touches = int(rows[0].get("touches") or 0)
        shown = w.q(kind, level, money(level), f"analysis.levels.{kind}[0].price", (kind,))
        parts.append(f"{kind} at {shown} ({touches} {plural(touches, 'touch', 'touches')})")
    poc = number(found.get("point_of_control"))
    if poc is None and all(p.startswith("no ") for p in parts):
        return w.missing("levels", "support or resistance from the recent bars")
    text = f"From the recent 1-minute bars, {w.symbol} has " + " and ".join(parts)
    if poc is not None:
        shown = w.q("point_of_control", poc, money(poc), "analysis.levels.point_of_control",
                    ("control", "busiest"))
        text += f"; the busiest price (volume point of control) is {shown}"
    return w.done("levels", text + ".")


def patterns(w: Writer) -> Statement:
    """Candlestick patterns, breakouts and crosses in the last 10 bars."""
    found = [p for p in w.data.patterns if isinstance(p, Mapping)]
    if not found:
        return w.done("patterns", f"No candlestick pattern, breakout or moving-average cross "
                      f"in {w.symbol}'s last 10 one-minute bars.")
    parts = []
    for p in found[:3]:
        ago = int(p.get("bars_ago") or 0)
        name = str(p.get("name", "")).replace("_", " ")
        parts.append(f"{name} ({p.get('direction')}, "
                     + ("on the last bar" if ago == 0 else f"{ago} {plural(ago, 'bar')} ago") + ")")
    return w.done("patterns", f"Recent patterns in {w.symbol}'s 1-minute bars: "
                  + "; ".join(parts) + ".")


def volume(w: Writer) -> Statement:
    """The day's volume against past sessions up to the same minute."""
    day_volume = w.number("volume")
    if day_volume is None:
        return w.missing("volume", "the day's volume")
    shown = w.market_q("volume", day_volume, whole(day_volume),
                ("volume", "traded", "shares"))
    text = f"{w.symbol} has traded {shown} shares today"
    crvol = number(w.analysis.get("cumulative_relative_volume"))
    rvol = number(w.analysis.get("relative_volume"))
    if crvol is not None:
        level = ("unusually heavy" if crvol >= UNUSUAL_RVOL else "above its usual level"
                 if crvol > 1.05 else "below its usual level" if crvol < 0.95 else "about usual")
        shown = w.q("cumulative_relative_volume", crvol, fixed(crvol) + "×",
                    "analysis.cumulative_relative_volume", ("usual", "relative", "average"))
        text += f", {shown} the average of past sessions up to the same minute: {level}"
    else:
        text += "; no earlier session is on record to compare it with"
    if rvol is not None:
        shown = w.q("relative_volume", rvol, fixed(rvol) + "×", "analysis.relative_volume",
                    ("minute",))
        text += f" (the last minute alone: {shown})"
    return w.done("volume", text + ".")


TOPICS: dict[str, Callable[[Writer], Statement]] = {
    "price": price, "rsi": rsi, "stochastic": stochastic, "macd": macd,
    "moving_average": moving_average, "adx": adx, "bollinger": bollinger, "vwap": vwap,
    "atr": atr, "realized_vol": realized_vol, "levels": levels, "patterns": patterns,
    "volume": volume,
}
