"""Statements about the option chain: implied moves, volatility, positioning and skew.

Figures come from :func:`market.chain_analytics.chain_summary`; an expiry-specific
figure uses the listed expiry the question's horizon resolves to
(:func:`rag.answers.intents.pick_expiry`), and the statement names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from market.chain_analytics import expected_move as implied_move
from rag.answers.facts import (
    Statement,
    Writer,
    big_money,
    fixed,
    fraction_pct,
    long_date,
    money,
    number,
    plural,
    side,
    signed,
    whole,
)
from rag.answers.intents import pick_expiry

IV_LABELS = ("iv", "implied volatility", "volatility")


def _terms(w: Writer) -> list[Mapping[str, Any]]:
    return [row for row in w.options.get("term_structure") or [] if isinstance(row, Mapping)]


def _expiry(w: Writer, need: str) -> Mapping[str, Any] | None:
    row = pick_expiry(_terms(w), w.horizon, need=need)
    if row is not None:
        w.expiry_used = str(row.get("expiration"))
    return row


def _term_q(w: Writer, row: Mapping[str, Any], key: str, value: float, shown: str,
            labels: tuple[str, ...], *, fraction: bool = False) -> str:
    """Record an expiry's figure (source ``options.term_structure[<expiry>].<key>``); return
    its text."""
    return w.q(key, value, shown, f"options.term_structure[{row.get('expiration')}].{key}",
               labels, fraction=fraction)


def _expiry_words(w: Writer, row: Mapping[str, Any]) -> str:
    """``the Friday 4 December 2026 expiry (3 days out; "by Friday" asked for ...)``."""
    day = str(row.get("expiration"))
    days = int(row.get("days_to_expiry") or 0)
    note = f"{days} {plural(days, 'day')} out"
    if w.horizon is not None:
        target = w.horizon.target.isoformat()
        note += f'; "{w.horizon.phrase}" is {long_date(target)}'
        if day != target:
            note += ", and this is the first expiry listed on or after it" if day > target \
                else ", after the last listed expiry"
    return f"the {long_date(day)} expiry ({note})"


def expected_move(w: Writer) -> Statement:
    """One-standard-deviation move to the asked expiry from its ATM IV."""
    spot = number(w.options.get("underlying_price")) or w.number("price")
    row = _expiry(w, "atm_iv")
    if row is None or spot is None:
        return w.missing("expected_move", "an at-the-money implied volatility for the "
                         "expected move")
    iv = float(row["atm_iv"])
    day = str(row.get("expiration"))
    move = implied_move(spot, iv, int(row.get("days_to_expiry") or 0))
    labels = ("move", "expected", "implied")
    shown_move = w.q("expected_move", move, "±" + money(move),
                     f"options.term_structure[{day}] (underlying_price × atm_iv × "
                     "√(days_to_expiry/365))", labels)
    shown_pct = w.q("expected_move_percent", move / spot, "±" + fraction_pct(move / spot),
                    "expected_move / options.underlying_price", labels, fraction=True)
    shown_iv = _term_q(w, row, "atm_iv", iv, fraction_pct(iv), IV_LABELS, fraction=True)
    return w.done("expected_move", (
        f"Options imply a one-standard-deviation move for {w.symbol} of {shown_move} "
        f"({shown_pct}) by {_expiry_words(w, row)}, from an at-the-money implied volatility "
        f"of {shown_iv} on {money(spot)}."))


def implied_vol(w: Writer) -> Statement:
    """ATM implied volatility of the asked (or nearest) expiry."""
    row = _expiry(w, "atm_iv")
    if row is None:
        return w.missing("implied_vol", "an at-the-money implied volatility")
    iv = float(row["atm_iv"])
    shown = _term_q(w, row, "atm_iv", iv, fraction_pct(iv), IV_LABELS, fraction=True)
    return w.done("implied_vol", f"{w.symbol}'s at-the-money implied volatility is {shown} "
                  f"(annualised) for {_expiry_words(w, row)}.")


def put_call(w: Writer) -> Statement:
    """Put/call volume and open-interest ratios with the totals behind them."""
    ratios = w.options.get("put_call") or {}
    parts = []
    lead: float | None = None
    for kind, ratio_key, put_key, call_key, verb, labels in (
            ("volume", "volume_ratio", "put_volume", "call_volume", "traded", ("volume",)),
            ("open-interest", "open_interest_ratio", "put_open_interest", "call_open_interest",
             "open", ("open interest", "open-interest", "oi"))):
        ratio = number(ratios.get(ratio_key))
        if ratio is None:
            continue
        lead = ratio if lead is None else lead
        shown = w.q(f"put_call_{ratio_key}", ratio, fixed(ratio),
                    f"options.put_call.{ratio_key}", labels)
        part = f"the put/call {kind} ratio is {shown}"
        puts, calls = number(ratios.get(put_key)), number(ratios.get(call_key))
        if puts is not None and calls is not None:
            shown_puts = w.q(put_key, puts, whole(puts), f"options.put_call.{put_key}", ("put",))
            shown_calls = w.q(call_key, calls, whole(calls), f"options.put_call.{call_key}",
                              ("call",))
            part += f" ({shown_puts} puts against {shown_calls} calls {verb})"
        parts.append(part)
    if lead is None:
        return w.missing("put_call", "the put/call ratios")
    mood = ("more puts than calls: defensive positioning" if lead > 1 else
            "more calls than puts: bullish-leaning positioning" if lead < 1 else
            "puts and calls balanced")
    return w.done("put_call", f"For {w.symbol}, " + "; ".join(parts) + f" — {mood}.")


def oi_change(w: Writer) -> Statement:
    """Open-interest change since the previous snapshot, calls and puts."""
    change = w.options.get("open_interest_change")
    total = number(change.get("total")) if isinstance(change, Mapping) else None
    if total is None or not isinstance(change, Mapping):
        return w.missing("oi_change", "the open-interest change")
    calls, puts = number(change.get("calls")) or 0.0, number(change.get("puts")) or 0.0
    shown = w.q("oi_change_total", total, signed(whole(total), total),
                "options.open_interest_change.total", ("open interest", "change", "changed"))
    shown_calls = w.q("oi_change_calls", calls, signed(whole(calls), calls),
                      "options.open_interest_change.calls", ("call",))
    shown_puts = w.q("oi_change_puts", puts, signed(whole(puts), puts),
                     "options.open_interest_change.puts", ("put",))
    text = (f"{w.symbol}'s open interest changed by {shown} contracts since the previous "
            f"snapshot (calls {shown_calls}, puts {shown_puts})")
    largest = [row for row in change.get("largest") or [] if isinstance(row, Mapping)]
    if largest:
        top = largest[0]
        moved = float(top.get("change") or 0.0)
        text += (f"; the largest change is the {top.get('expiration')} "
                 f"{money(float(top.get('strike') or 0.0))} {top.get('type')} "
                 f"({signed(whole(moved), moved)})")
    return w.done("oi_change", text + ".")


def max_pain(w: Writer) -> Statement:
    """Max-pain strike of the asked (or nearest) expiry against the price."""
    row = _expiry(w, "max_pain")
    if row is None:
        return w.missing("max_pain", "max pain")
    pain = float(row["max_pain"])
    shown = _term_q(w, row, "max_pain", pain, money(pain), ("pain",))
    text = f"{w.symbol}'s max pain for {_expiry_words(w, row)} is {shown}"
    last = w.number("price")
    if last is not None:
        text += f", {money(abs(pain - last))} {side(pain, last)} the price of {money(last)}"
    return w.done("max_pain", text + ".")


def gamma(w: Writer) -> Statement:
    """Dealer gamma exposure per 1% move (calls +, puts -)."""
    exposure = w.options.get("exposure") or {}
    total = number(exposure.get("total_gamma_exposure"))
    if total is None:
        return w.missing("gamma", "the gamma exposure")
    shown = w.q("gamma_exposure", total, big_money(total),
                "options.exposure.total_gamma_exposure", ("gamma", "gex"))
    text = f"{w.symbol}'s dealer gamma exposure is {shown} per 1% move"
    calls = number(exposure.get("call_gamma_exposure"))
    puts = number(exposure.get("put_gamma_exposure"))
    if calls is not None and puts is not None:
        shown_calls = w.q("call_gamma_exposure", calls, big_money(calls),
                          "options.exposure.call_gamma_exposure", ("call",))
        shown_puts = w.q("put_gamma_exposure", puts, big_money(puts),
                         "options.exposure.put_gamma_exposure", ("put",))
        text += f" (calls {shown_calls}, puts {shown_puts})"
    meaning = ("positive: dealers long gamma tend to damp moves" if total > 0 else
               "negative: dealers short gamma tend to amplify moves")
    return w.done("gamma", f"{text}, {meaning}.")


def delta_exposure(w: Writer) -> Statement:
    """Option holders' net dollar delta."""
    exposure = w.options.get("exposure") or {}
    total = number(exposure.get("total_delta_exposure"))
    if total is None:
        return w.missing("delta_exposure", "the delta exposure")
    shown = w.q("delta_exposure", total, big_money(total),
                "options.exposure.total_delta_exposure", ("delta",))
    return w.done("delta_exposure", f"Option holders' net delta exposure in {w.symbol} is "
                  f"{shown} of stock: net {'long' if total > 0 else 'short'}.")


def unusual(w: Writer) -> Statement:
    """Contracts flagged for volume above their open interest (or their own history)."""
    if "unusual_activity" not in w.options:
        return w.missing("unusual", "unusual option activity")
    rows = [r for r in w.options.get("unusual_activity") or [] if isinstance(r, Mapping)]
    if not rows:
        listed = int(number(w.options.get("contracts")) or 0)
        count = w.q("unusual_count", 0.0, "0", "len(options.unusual_activity)", ("unusual",))
        of = f" of {w.symbol}'s {listed:,} listed contracts" if listed else f" {w.symbol} contracts"
        return w.done("unusual", f"{count}{of} show unusual activity (at least 100 contracts "
                      "traded and more than the open interest).")
    top = rows[0]
    traded, interest = float(top.get("volume") or 0.0), float(top.get("open_interest") or 0.0)
    count = w.q("unusual_count", float(len(rows)), str(len(rows)),
                "len(options.unusual_activity)", ("contract",))
    shown = w.q("unusual_volume", traded, whole(traded), "options.unusual_activity[0].volume",
                ("traded",))
    return w.done("unusual", (
        f"{count} {w.symbol} {plural(len(rows), 'contract')} show unusual activity; "
        f"the busiest is the {top.get('expiration')} {money(float(top.get('strike') or 0.0))} "
        f"{top.get('type')}: {shown} contracts traded against {whole(interest)} open."))


def skew(w: Writer) -> Statement:
    """25-delta put-minus-call IV skew of the asked (or nearest) expiry."""
    row = _expiry(w, "skew_25d")
    if row is None:
        return w.missing("skew", "a 25-delta skew (no expiry's deltas reach ±0.25 with an "
                         "implied volatility)")
    value = float(row["skew_25d"])
    shown = _term_q(w, row, "skew_25d", value, signed(fixed(value * 100), value) + " vol points",
                    ("skew",))
    text = f"{w.symbol}'s 25-delta skew for {_expiry_words(w, row)} is {shown}"
    put_iv, call_iv = number(row.get("put_iv_25d")), number(row.get("call_iv_25d"))
    if put_iv is not None and call_iv is not None:
        text += f" (put IV {fraction_pct(put_iv)} minus call IV {fraction_pct(call_iv)})"
    mood = "puts are richer than calls" if value > 0 else "calls are richer than puts"
    return w.done("skew", f"{text}: {mood}.")


def term_structure(w: Writer) -> Statement:
    """ATM IV of the first four expiries with one, and the curve's slope."""
    rows = [r for r in _terms(w) if number(r.get("atm_iv")) is not None
            and (r.get("days_to_expiry") or 0) >= 1][:4]
    if not rows:
        return w.missing("term_structure", "the implied-volatility term structure")
    parts = []
    for row in rows:
        iv = float(row["atm_iv"])
        day = str(row["expiration"])
        parts.append(f"{day} " + _term_q(w, row, "atm_iv", iv, fraction_pct(iv), ("iv",),
                                         fraction=True))
    first, last = float(rows[0]["atm_iv"]), float(rows[-1]["atm_iv"])
    shape = ("upward sloping (later expiries richer)" if last > first else
             "inverted (near expiries richer)" if last < first else "flat")
    return w.done("term_structure", f"{w.symbol}'s at-the-money IV by expiry: "
                  + ", ".join(parts) + (f" — {shape}." if len(rows) > 1 else "."))


TOPICS: dict[str, Callable[[Writer], Statement]] = {
    "expected_move": expected_move, "implied_vol": implied_vol, "put_call": put_call,
    "oi_change": oi_change, "max_pain": max_pain, "gamma": gamma,
    "delta_exposure": delta_exposure, "unusual": unusual, "skew": skew,
    "term_structure": term_structure,
}
