"""Time-averaged mean squared displacement (MSD) fits of one trajectory segment.

Used by the classical baseline (its whole estimate) and by the AnomalousNet segment stage
(to refine the networks' per-segment values on long segments). 2D, AnDi-2 convention: each
coordinate's increments have variance ``2 K lag^alpha``, so ``MSD(lag) = 4 K lag^alpha + 4 sigma^2``
with localisation noise sigma.

With ``outlier_ratio`` (off by default), each lag's MSD leaves out squared displacements
more than that many times the lag's robust MSD (:func:`trimmed_msd`): one frame far off the
rest (a tracking jump, a dimer that lets go and rebinds within a frame in the AnDi
simulator) otherwise dominates a slow segment's MSD. Gaussian steps exceed 8x their MSD with
probability e^-8 (0.03 %), and the trimmed mean is corrected for that cut, so clean segments
keep an unbiased MSD. Why it is off: ``benchmarks/TUNING.md``, "One-frame jumps".
"""
from __future__ import annotations

import numpy as np

ANDI_NOISE = 0.12  # the 2nd AnDi Challenge's localisation noise, px


def trimmed_msd(sq: np.ndarray, outlier_ratio: float | None = None) -> float:
    """Mean of 2D squared displacements ``sq`` without the ones above ``outlier_ratio`` times
    the MSD (None: the plain mean). The MSD starts from the median (a 2D Gaussian step's
    squared length is MSD x Exp(1), median MSD ln 2), is re-estimated twice from the kept
    steps, and is divided by the share of an Exp(1) mean kept below the cut."""
    sq = np.asarray(sq, np.float64)
    if outlier_ratio is None or len(sq) < 3:
        return float(np.mean(sq))
    t = outlier_ratio
    kept_share = 1.0 - t * np.exp(-t) / (1.0 - np.exp(-t))
    msd = float(np.median(sq)) / np.log(2.0)
    for _ in range(2):
        msd = float(np.mean(sq[sq <= t * msd])) / kept_share
    return msd


def msd_fit(x: np.ndarray, y: np.ndarray, max_lag: int = 10, noise: float = ANDI_NOISE,
            observed: np.ndarray | None = None, outlier_ratio: float | None = None
            ) -> tuple[float, float]:
    """(alpha, K) from a time-averaged MSD fit of one segment: least squares of
    log(MSD - 4 sigma^2) against log(lag) over lags 1..min(max_lag, n//4). Segments too
    short for two lags get alpha 1 and K from the first lag. alpha is clipped to [0, 2].
    ``observed`` (bool per point): only displacements between two observed points count
    (filled points of a tracked trajectory are missing data, not motion). ``outlier_ratio``:
    see :func:`trimmed_msd` (None: plain means)."""
    n = len(x)
    if n < 2:
        return 1.0, 1.0
    lags = np.arange(1, max(2, min(max_lag, n // 4)) + 1)
    lags = lags[lags < n]
    ok = np.ones(n, bool) if observed is None else np.asarray(observed, bool)
    msd = []
    for l in lags:
        both = ok[l:] & ok[:-l]
        sq = (x[l:] - x[:-l]) ** 2 + (y[l:] - y[:-l]) ** 2
        msd.append(trimmed_msd(sq[both] if both.any() else sq, outlier_ratio))
    msd = np.array(msd)
    # noise can exceed the measured MSD (slow segments); a motionless one has MSD 0
    signal = np.maximum(np.maximum(msd - 4 * noise ** 2, 1e-3 * msd), 1e-12)
    if len(lags) < 2:
        return 1.0, float(signal[0] / 4)
    slope, _ = np.polyfit(np.log(lags), np.log(signal), 1)
    alpha = float(np.clip(slope, 0.0, 2.0))
    # refit K with alpha fixed, so the clip does not bias K
    K = float(np.exp(np.mean(np.log(signal) - alpha * np.log(lags))) / 4)
    return alpha, K


def squared_steps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared frame-to-frame displacements (length n-1; entry i: point i to i + 1)."""
    return np.diff(x) ** 2 + np.diff(y) ** 2


def log_steps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log of squared frame-to-frame displacements (length n-1): a change of K or alpha
    shifts its mean, and its variance is the same for every K (pi^2/6 for 2D Gaussian steps)."""
    return np.log(squared_steps(x, y) + 1e-12)


def turn_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine of the angle between each step and the next (length n-2; entry i turns at point
    i + 1): near 1 for directed motion whatever its speed, negative for subdiffusion and for
    steps dominated by localisation noise, 0 on average for Brownian motion."""
    dx, dy = np.diff(x), np.diff(y)
    dot = dx[:-1] * dx[1:] + dy[:-1] * dy[1:]
    norm = np.hypot(dx[:-1], dy[:-1]) * np.hypot(dx[1:], dy[1:])
    return np.where(norm > 0, dot / np.maximum(norm, 1e-300), 0.0)
