"""Price dynamics of the simulator: Heston-like stochastic variance with Merton jumps.

Per symbol, in trading-time years (``TRADING_SECONDS_PER_YEAR``)::

    d ln S = (mu - v/2 - lambda k) dt + sqrt(v) dW_s + J dN,   J ~ N(jump_mean, jump_std^2)
    dv     = kappa (theta - v) dt + xi sqrt(v) dW_v,          corr(dW_s, dW_v) = rho
    dW_s   = beta dW_m + sqrt(1 - beta^2) dW_i                 (dW_m: one market factor)

Parameters are drawn per symbol from ``(seed, crc32(symbol))`` so a symbol keeps
its character whatever universe it is simulated in. A few well-known tickers
start near familiar price and volatility levels.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market.feeds.base import F64

# (price level, annual volatility, activity weight, market correlation)
_KNOWN: dict[str, tuple[float, float, float, float]] = {
    "AAPL": (230.0, 0.24, 3.0, 0.70), "MSFT": (420.0, 0.22, 2.5, 0.70),
    "NVDA": (140.0, 0.48, 4.0, 0.65), "TSLA": (250.0, 0.55, 3.5, 0.50),
    "SPY": (590.0, 0.14, 5.0, 0.97), "QQQ": (505.0, 0.18, 3.5, 0.95),
    "AMZN": (200.0, 0.30, 2.5, 0.65), "META": (570.0, 0.33, 2.0, 0.60),
    "IWM": (225.0, 0.20, 2.0, 0.90), "GOOGL": (170.0, 0.28, 2.0, 0.65),
}
_INDEX_LIKE = {"SPY", "QQQ", "IWM", "DIA"}
DRIFT = 0.06  # annual real-world drift


@dataclass(slots=True)
class ProcessParams:
    """Per-symbol model parameters, one array entry per symbol (annual units)."""

    spot: F64  # starting price
    theta: F64  # long-run variance
    variance: F64  # starting variance
    kappa: F64  # mean-reversion speed of the variance
    xi: F64  # volatility of variance
    rho: F64  # correlation of returns and variance (leverage, < 0)
    beta: F64  # correlation of returns with the market factor
    jump_intensity: F64  # jumps per year
    jump_mean: F64  # mean log jump
    jump_std: F64  # std of log jump
    activity: F64  # relative message share (sums to 1)
    spread_bps: F64  # quoted stock spread in basis points at 25% volatility
    skew: F64  # implied-vol skew per standard deviation of log-moneyness
    smile: F64  # implied-vol convexity per squared standard deviation

    @property
    def jump_compensator(self) -> F64:
        """Return lambda * E[e^J - 1], subtracted from the drift."""
        mean_jump = np.exp(self.jump_mean + 0.5 * self.jump_std**2) - 1.0
        return np.asarray(self.jump_intensity * mean_jump, np.float64)


def draw_params(symbols: Sequence[str], seed: int) -> ProcessParams:
    """Draw each symbol's parameters from the seed and its name (stable across universes)."""
    columns: list[list[float]] = [[] for _ in range(14)]
    for symbol in symbols:
        rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
        known = _KNOWN.get(symbol)
        index_like = symbol in _INDEX_LIKE
        if known is not None:
            level, vol, activity, beta = known
            level *= float(rng.uniform(0.95, 1.05))
        else:
            level = float(np.exp(rng.normal(math.log(60.0), 1.0)))
            level = min(max(level, 3.0), 2_000.0)
            vol = float(np.clip(rng.lognormal(math.log(0.32), 0.35), 0.12, 1.2))
            activity = float(rng.lognormal(0.0, 0.8))
            beta = float(rng.uniform(0.9, 0.97) if index_like else rng.uniform(0.3, 0.7))
        theta = vol * vol
        if index_like:
            spread_bps = float(rng.uniform(0.1, 0.25))
        elif known is not None:
            spread_bps = float(rng.uniform(0.2, 0.8))
        else:
            spread_bps = float(rng.uniform(1.0, 5.0))
        row = [
            round(level, 2),
            theta,
            theta * float(rng.lognormal(0.0, 0.25)),
            float(rng.uniform(2.0, 6.0)),
            float(rng.uniform(0.3, 0.6)) * min(1.0, vol / 0.2),
            float(rng.uniform(-0.8, -0.5) if index_like else rng.uniform(-0.7, -0.3)),
            beta,
            float(rng.uniform(1.0, 3.0) if index_like else rng.uniform(2.0, 8.0)),
            float(rng.uniform(-0.03, -0.01) if index_like else rng.uniform(-0.03, 0.01)),
            float(rng.uniform(0.01, 0.02) if index_like else rng.uniform(0.02, 0.06)),
            activity,
            spread_bps,
            float(rng.uniform(-0.16, -0.10) if index_like else rng.uniform(-0.10, -0.04)),
            float(rng.uniform(0.01, 0.03) if index_like else rng.uniform(0.02, 0.05)),
        ]
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    arrays = [np.asarray(c, np.float64) for c in columns]
    arrays[10] = arrays[10] / arrays[10].sum()
    return ProcessParams(*arrays)


@dataclass(slots=True)
class ProcessStep:
    """One step's outcome per symbol: total log return and the variance used."""

    log_return: F64
    variance: F64  # variance during the step (start of step)
    diffusion_std: F64  # sqrt(variance * dt): scale of the Brownian part


def step(
    params: ProcessParams,
    log_spot: F64,
    variance: F64,
    dt: float,
    rng: np.random.Generator,
) -> ProcessStep:
    """Advance ``log_spot`` and ``variance`` in place by ``dt`` trading years.

    Full truncation Euler for the variance (floored at 1% of theta);
    Poisson-compound normal jumps. Returns the step's log return per symbol.
    """
    n = len(log_spot)
    market = rng.standard_normal()
    shocks = rng.standard_normal((3, n))
    beta = params.beta
    return_shock = beta * market + np.sqrt(1.0 - beta * beta) * shocks[0]
    rho = params.rho
    variance_shock = rho * return_shock + np.sqrt(1.0 - rho * rho) * shocks[1]
    v = variance.copy()
    sd = np.sqrt(v * dt)
    jumps = rng.poisson(params.jump_intensity * dt) if dt > 0 else np.zeros(n, np.int64)
    jump_size = jumps * params.jump_mean + np.sqrt(jumps) * params.jump_std * shocks[2]
    drift = (DRIFT - 0.5 * v - params.jump_compensator) * dt
    log_return = drift + sd * return_shock + jump_size
    log_spot += log_return
    variance += params.kappa * (params.theta - v) * dt + params.xi * np.sqrt(v) * np.sqrt(
        dt
    ) * variance_shock
    np.maximum(variance, 0.01 * params.theta, out=variance)
    return ProcessStep(np.asarray(log_return, np.float64), v, np.asarray(sd, np.float64))


def expected_average_variance(theta: F64, kappa: F64, variance: F64, years: F64) -> F64:
    """Return E[mean variance over the next ``years``] under the variance's mean reversion.

    ``theta + (v - theta) (1 - e^{-kappa T}) / (kappa T)``: the Heston ATM term
    structure. All arguments broadcast (index per-symbol arrays per contract first).
    """
    kt = np.maximum(kappa * years, 1e-9)
    weight = -np.expm1(-kt) / kt
    return np.asarray(theta + (variance - theta) * weight, np.float64)
