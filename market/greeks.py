"""Black-Scholes-Merton prices, Greeks and implied volatility over numpy arrays.

Units are those of ``vollib``'s analytical Greeks (CONTRACT §5): ``delta`` and
``gamma`` per 1 of the underlying, ``vega`` per volatility point (0.01),
``theta`` per calendar day (the annual figure / 365), ``rho`` per rate point
(0.01). ``T`` is in years, ``r`` and ``q`` are continuously compounded annual
rates, ``sigma`` is the annual volatility.

Edge cases (all results stay finite where the inputs are):

* ``T <= 0`` (expired): price is the intrinsic value ``max(w(S - K), 0)``;
  delta is ``+1``/``-1`` in the money and 0 otherwise (0 exactly at the money);
  gamma, theta, vega and rho are 0.
* ``sigma == 0`` (or ``sigma * sqrt(T)`` below 1e-300): the deterministic limit,
  price ``max(w(S e^{-qT} - K e^{-rT}), 0)`` with the matching delta, theta and
  rho of that discounted forward intrinsic value; gamma and vega are 0.
* Deep in/out of the money and long-dated options: the normal tails come from
  ``erfc`` so tiny prices keep their relative precision; nothing overflows.
* ``S <= 0``, ``K <= 0``, ``sigma < 0`` or any NaN input: every output is NaN.

Implied volatility is solved in Black's normalised coordinates
(``x = ln(F/K)``, ``s = sigma sqrt(T)``), on the out-of-the-money side of
put-call parity, by a third-order Householder iteration from an asymptotic
initial guess, with a bracket and a bisection fall-back: at most
``_IV_MAX_ITERATIONS`` steps per option, so it never hangs.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BSM_OUTPUTS = ("price", "delta", "gamma", "theta", "vega", "rho")

# No 'nnan'/'ninf': NaN inputs must propagate and the edge-case branches test them;
# no 'afn': libm's exp/log/erfc keep their full precision (IV is solved to 1e-10).
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_DAYS_PER_YEAR = 365.0
_SECONDS_PER_YEAR = 365.0 * 86400.0
_EXPIRY_UTC_NS = 20 * 3600 * 1_000_000_000  # 16:00 New York taken as 20:00 UTC
_IV_MAX_ITERATIONS = 40


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, inline="always")
def _bsm_one(is_call: bool, s: float, k: float, t: float, r: float, q: float, v: float,
             out: F64, i: int) -> None:
    """Write price and Greeks (vollib units) of one option into ``out[:, i]``."""
    nan = math.nan
    if not (s > 0.0 and k > 0.0 and v >= 0.0) or t != t or r != r or q != q:
        for j in range(6):
            out[j, i] = nan
        return
    w = 1.0 if is_call else -1.0
    if t <= 0.0:
        intrinsic = w * (s - k)
        itm = intrinsic > 0.0
        out[0, i] = intrinsic if itm else 0.0
        out[1, i] = w if itm else 0.0
        for j in range(2, 6):
            out[j, i] = 0.0
        return
    dq = math.exp(-q * t)
    dr = math.exp(-r * t)
    sqrt_t = math.sqrt(t)
    vol_t = v * sqrt_t
    sf = s * dq
    kf = k * dr
    if vol_t < 1e-300:
        itm = w * (sf - kf) > 0.0
        if itm:
            out[0, i] = w * (sf - kf)
            out[1, i] = w * dq
            out[3, i] = (w * q * sf - w * r * kf) / _DAYS_PER_YEAR
            out[5, i] = w * kf * t * 0.01
        else:
            out[0, i] = 0.0
            out[1, i] = 0.0
            out[3, i] = 0.0
            out[5, i] = 0.0
        out[2, i] = 0.0
        out[4, i] = 0.0
        return
    d1 = (math.log(s / k) + (r - q) * t) / vol_t + 0.5 * vol_t
    d2 = d1 - vol_t
    nd1 = 0.5 * math.erfc(-w * d1 * _SQRT1_2)  # N(w d1)
    nd2 = 0.5 * math.erfc(-w * d2 * _SQRT1_2)  # N(w d2)
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    price = w * (sf * nd1 - kf * nd2)
    out[0, i] = price if price > 0.0 else 0.0
    out[1, i] = w * dq * nd1
    out[2, i] = dq * pdf / (s * vol_t)
    out[3, i] = (-sf * pdf * v / (2.0 * sqrt_t) - w * r * kf * nd2
                 + w * q * sf * nd1) / _DAYS_PER_YEAR
    out[4, i] = sf * pdf * sqrt_t * 0.01
    out[5, i] = w * kf * t * nd2 * 0.01


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _bsm_kernel(is_call: npt.NDArray[np.bool_], s: F64, k: F64, t: F64, r: F64, q: F64,
                v: F64, n: int, out: F64) -> None:
    """Loop ``_bsm_one``; an input of length 1 is broadcast (stride 0)."""
    c0 = 1 if is_call.shape[0] > 1 else 0
    s0 = 1 if s.shape[0] > 1 else 0
    k0 = 1 if k.shape[0] > 1 else 0
    t0 = 1 if t.shape[0] > 1 else 0
    r0 = 1 if r.shape[0] > 1 else 0
    q0 = 1 if q.shape[0] > 1 else 0
    v0 = 1 if v.shape[0] > 1 else 0
    for i in range(n):
        _bsm_one(is_call[i * c0], s[i * s0], k[i * k0], t[i * t0], r[i * r0], q[i * q0],
                 v[i * v0], out, i)


def _is_call_array(flag: Any) -> npt.NDArray[np.bool_]:
    """Turn ``"c"``/``"p"`` (scalar or array, any case) or a bool array into ``is_call``."""
    arr = np.asarray(flag)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind == "S":
        arr = arr.astype(str)
    if arr.dtype.kind != "U":
        raise ValueError("flag must be 'c'/'p', an array of them, or a bool array is_call")
    if arr.dtype.itemsize == 4:  # one character: compare code points, lower-cased
        code = (np.ascontiguousarray(arr).reshape(-1).view(np.uint32) | 0x20).reshape(arr.shape)
        is_call = code == ord("c")
        valid = is_call | (code == ord("p"))
    else:
        is_call = (arr == "c") | (arr == "C")
        valid = is_call | (arr == "p") | (arr == "P")
    if not np.all(valid):
        raise ValueError("flag values must be 'c' or 'p'")
    return np.asarray(is_call)


def _flatten(arrays: list[npt.NDArray[Any]]) -> tuple[tuple[int, ...], list[npt.NDArray[Any]]]:
    """Broadcast shape and 1-D contiguous versions (length 1 or n) of ``arrays``."""
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    flat = []
    for a in arrays:
        if a.size == 1:
            flat.append(np.ascontiguousarray(a.reshape(1)))
        elif a.shape == shape:
            flat.append(np.ascontiguousarray(a).reshape(-1))
        else:
            flat.append(np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1))
    return shape, flat


def bsm_greeks_arrays(is_call: npt.ArrayLike, S: npt.ArrayLike, K: npt.ArrayLike,  # noqa: N803
                      T: npt.ArrayLike, r: npt.ArrayLike, q: npt.ArrayLike,  # noqa: N803
                      sigma: npt.ArrayLike, out: F64 | None = None) -> F64:
    """Price and Greeks as a ``(6, n)`` array, rows in ``BSM_OUTPUTS`` order.

    The fast core: 1-D inputs of length ``n`` or 1 (scalars broadcast without
    copies), ``is_call`` a bool array. ``out`` (shape ``(6, n)``, float64,
    C-contiguous) is reused when given. Units and edge cases: see the module.
    """
    _, flat = _flatten([np.asarray(is_call, dtype=np.bool_)]
                       + [np.asarray(a, dtype=np.float64) for a in (S, K, T, r, q, sigma)])
    n = max(a.shape[0] for a in flat)
    if out is None:
        out = np.empty((6, n))
    elif out.shape != (6, n) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 array of shape (6, {n})")
    _bsm_kernel(flat[0], flat[1], flat[2], flat[3], flat[4], flat[5], flat[6], n, out)
    return out


def bsm_greeks(flag: Any, S: npt.ArrayLike, K: npt.ArrayLike, T: npt.ArrayLike,  # noqa: N803
               r: npt.ArrayLike, q: npt.ArrayLike, sigma: npt.ArrayLike) -> dict[str, F64]:
    """Return Black-Scholes-Merton price, delta, gamma, theta, vega and rho.

    ``flag`` is ``"c"``/``"p"``, an array of them, or a bool array ``is_call``;
    the other inputs broadcast against each other like numpy arrays. Each value
    of the dict has the broadcast shape. Units (vollib's): delta and gamma per 1
    of the underlying, vega per 0.01 volatility, theta per calendar day, rho per
    0.01 rate. Edge cases (expired, zero volatility, bad inputs): see the module.
    """
    arrays = [_is_call_array(flag)] + [np.asarray(a, dtype=np.float64)
                                        for a in (S, K, T, r, q, sigma)]
    shape, flat = _flatten(arrays)
    n = int(np.prod(shape))
    out = np.empty((6, n))
    _bsm_kernel(flat[0], flat[1], flat[2], flat[3], flat[4], flat[5], flat[6], n, out)
    return {name: out[j].reshape(shape) for j, name in enumerate(BSM_OUTPUTS)}


# ---- implied volatility -----------------------------------------------------------------

@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, inline="always")
def _norm_inv(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, ~1e-9 relative)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    if p < 0.02425 or p > 1.0 - 0.02425:
        sign = 1.0 if p < 0.5 else -1.0
        u = math.sqrt(-2.0 * math.log(p if p < 0.5 else 1.0 - p))
        return sign * ((((((-7.784894002430293e-03 * u - 3.223964580411365e-01) * u
                    - 2.400758277161838e+00) * u - 2.549732539343734e+00) * u
                  + 4.374664141464968e+00) * u + 2.938163982698783e+00)
                / ((((7.784695709041462e-03 * u + 3.224671290700398e-01) * u
                     + 2.445134137142996e+00) * u + 3.754408661907416e+00) * u + 1.0))
    u = p - 0.5
    z = u * u
    return (((((((-3.969683028665376e+01 * z + 2.209460984245205e+02) * z
                 - 2.759285104469687e+02) * z + 1.383577518672690e+02) * z
               - 3.066479806614716e+01) * z + 2.506628277459239e+00) * u)
            / (((((-5.447609879822406e+01 * z + 1.615858368580409e+02) * z
                  - 1.556989798598866e+02) * z + 6.680131188771972e+01) * z
                - 1.328068155288572e+01) * z + 1.0))


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, inline="always")
def _otm_call(x: float, s: float) -> float:
    """Normalised out-of-the-money Black call ``b(x, s)`` for ``x <= 0``, ``s > 0``."""
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    e = math.exp(0.5 * x)
    return 0.5 * (e * math.erfc(-d1 * _SQRT1_2) - math.erfc(-d2 * _SQRT1_2) / e)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _solve_normalised(beta: float, x: float) -> float:
    """Solve ``b(x, s) = beta`` for ``s`` (``x <= 0``, ``0 < beta < e^{x/2}``)."""
    ax = -x
    b_max = math.exp(0.5 * x)
    s_c = math.sqrt(2.0 * ax)
    lower = False
    if s_c > 0.0:
        b_c = _otm_call(x, s_c)
        lower = beta < b_c
    if lower:
        # ln b ~ A - x^2 / (2 s^2) near the bottom; match A at the inflection point s_c.
        a = math.log(b_c) + 0.5 * ax
        s = ax / math.sqrt(2.0 * (a - math.log(beta)))
        # Far down the wing the asymptotic b ~ exp(-x^2/2s^2 - s^2/8) s^3 / (x^2 sqrt(2 pi))
        # is better: refine by fixed-point steps while it stays meaningful.
        if s < 0.25 * ax:
            c0 = -2.0 * math.log(ax) - 0.5 * math.log(2.0 * math.pi) - math.log(beta)
            for _ in range(3):
                rhs = 3.0 * math.log(s) - 0.125 * s * s + c0
                if not rhs > 0.0:
                    break
                s = ax / math.sqrt(2.0 * rhs)
        lo, hi = 0.0, s_c
    else:
        # b_max - b ~ (e^{x/2} + e^{-x/2}) N(-s/2) for large s.
        s = -2.0 * _norm_inv((b_max - beta) / (b_max + 1.0 / b_max))
        if not s > s_c:
            s = s_c if s_c > 0.0 else 1e-8
        lo, hi = s_c, math.inf
    log_beta = math.log(beta)
    for _ in range(_IV_MAX_ITERATIONS):
        if not (lo < s < hi):
            s = 0.5 * (lo + hi) if hi < math.inf else 2.0 * lo + 1.0
        b = _otm_call(x, s)
        if b > beta:
            hi = s
        elif b < beta:
            lo = s
        else:
            return s
        # Derivatives of b in s: b' = exp(-(x^2/s^2 + s^2/4)/2)/sqrt(2 pi).
        h = x * x / (s * s * s) - 0.25 * s
        b1 = _INV_SQRT_2PI * math.exp(-0.5 * (x * x / (s * s) + 0.25 * s * s))
        b2 = b1 * h
        b3 = b1 * (h * h - 3.0 * x * x / (s * s * s * s) - 0.25)
        if lower and b > 0.0:
            # objective ln b - ln beta: nearly linear in the lower wing
            f0 = math.log(b) - log_beta
            g = b1 / b
            f1 = g
            f2 = b2 / b - g * g
            f3 = b3 / b - 3.0 * b2 * g / b + 2.0 * g * g * g
        else:
            f0 = b - beta
            f1 = b1
            f2 = b2
            f3 = b3
        if not f1 > 0.0:
            s = math.nan  # forces a bisection step
            continue
        nu = -f0 / f1
        h2 = f2 / f1
        h3 = f3 / f1
        # Householder's third-order step
        step = nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu / 6.0))
        if not math.isfinite(step):
            step = nu
        s_new = s + step
        if abs(step) <= 1e-12 * s:  # cubic convergence: the error left is far smaller
            return s_new if lo <= s_new <= hi else s
        if hi - lo <= 1e-14 * s:
            return 0.5 * (lo + hi)
        s = s_new
    return s


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _iv_one(is_call: bool, price: float, s: float, k: float, t: float, r: float,
            q: float) -> float:
    """Implied volatility of one option; NaN outside the no-arbitrage bounds."""
    if not (price >= 0.0 and s > 0.0 and k > 0.0 and t > 0.0) or r != r or q != q:
        return math.nan
    if not (math.isfinite(price) and math.isfinite(s) and math.isfinite(t)):
        return math.nan
    # at or above the upper bound (S e^{-qT} for a call, K e^{-rT} for a put): no volatility
    if price >= (s * math.exp(-q * t) if is_call else k * math.exp(-r * t)):
        return math.nan
    forward = s * math.exp((r - q) * t)
    undiscounted = price * math.exp(r * t)
    root_fk = math.sqrt(forward * k)
    beta = undiscounted / root_fk
    x = math.log(forward / k)
    e = math.exp(0.5 * x)
    theta = 1.0 if is_call else -1.0
    intrinsic = theta * (e - 1.0 / e)
    if intrinsic > 0.0:
        beta -= intrinsic  # the out-of-the-money twin by put-call parity
    x = -abs(x)
    upper = math.exp(0.5 * x)
    if beta < 0.0 or beta >= upper or not math.isfinite(beta):
        # a price marginally under intrinsic from rounding counts as sigma = 0
        if beta < 0.0 and beta > -1e-14 * (abs(intrinsic) + 1.0):
            return 0.0
        return math.nan
    if beta == 0.0:
        return 0.0
    return _solve_normalised(beta, x) / math.sqrt(t)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _iv_kernel(is_call: npt.NDArray[np.bool_], price: F64, s: F64, k: F64, t: F64, r: F64,
               q: F64, n: int, out: F64) -> None:
    """Loop ``_iv_one``; an input of length 1 is broadcast (stride 0)."""
    c0 = 1 if is_call.shape[0] > 1 else 0
    p0 = 1 if price.shape[0] > 1 else 0
    s0 = 1 if s.shape[0] > 1 else 0
    k0 = 1 if k.shape[0] > 1 else 0
    t0 = 1 if t.shape[0] > 1 else 0
    r0 = 1 if r.shape[0] > 1 else 0
    q0 = 1 if q.shape[0] > 1 else 0
    for i in range(n):
        out[i] = _iv_one(is_call[i * c0], price[i * p0], s[i * s0], k[i * k0], t[i * t0],
                         r[i * r0], q[i * q0])


def implied_volatility(price: npt.ArrayLike, S: npt.ArrayLike, K: npt.ArrayLike,  # noqa: N803
                       T: npt.ArrayLike, r: npt.ArrayLike, q: npt.ArrayLike,  # noqa: N803
                       flag: Any) -> F64:
    """Return the Black-Scholes-Merton implied volatility (annual) of ``price``.

    ``price`` is the option's (discounted) premium; ``flag`` as in
    :func:`bsm_greeks`; inputs broadcast. NaN where no volatility reproduces the
    price: below the intrinsic value of the forward, at or above the upper bound
    (``S e^{-qT}`` for a call, ``K e^{-rT}`` for a put), ``T <= 0``, bad inputs.
    A price at the intrinsic value gives 0. Accurate to about 1e-12 in sigma
    where the price determines sigma well (vega not negligible against the
    price's rounding); at most ``_IV_MAX_ITERATIONS`` steps per option.
    """
    arrays = [_is_call_array(flag)] + [np.asarray(a, dtype=np.float64)
                                        for a in (price, S, K, T, r, q)]
    shape, flat = _flatten(arrays)
    n = int(np.prod(shape))
    out = np.empty(n)
    _iv_kernel(flat[0], flat[1], flat[2], flat[3], flat[4], flat[5], flat[6], n, out)
    return out.reshape(shape)


def implied_volatility_arrays(is_call: npt.ArrayLike, price: npt.ArrayLike,
                              S: npt.ArrayLike, K: npt.ArrayLike,  # noqa: N803
                              T: npt.ArrayLike, r: npt.ArrayLike,  # noqa: N803
                              q: npt.ArrayLike, out: F64 | None = None) -> F64:
    """Implied volatility over 1-D arrays (length n or 1), ``is_call`` a bool array."""
    _, flat = _flatten([np.asarray(is_call, dtype=np.bool_)]
                       + [np.asarray(a, dtype=np.float64) for a in (price, S, K, T, r, q)])
    n = max(a.shape[0] for a in flat)
    if out is None:
        out = np.empty(n)
    _iv_kernel(flat[0], flat[1], flat[2], flat[3], flat[4], flat[5], flat[6], n, out)
    return out


def time_to_expiry(expiration: npt.ArrayLike, now_ns: int) -> F64:
    """Years from ``now_ns`` (Unix ns, UTC) to each expiry, clipped at 0.

    ``expiration`` is a ``datetime64[D]`` array; an option expires at 16:00 New
    York, taken as 20:00 UTC on that date. Years are seconds / (365 * 86400).
    NaT gives NaN.
    """
    days = np.asarray(expiration, dtype="datetime64[D]")
    expiry_ns = days.astype("datetime64[ns]").astype(np.int64) + _EXPIRY_UTC_NS
    years = np.maximum(expiry_ns - np.int64(now_ns), 0).astype(np.float64) / 1e9
    years /= _SECONDS_PER_YEAR
    return np.where(np.isnat(days), np.nan, years)
