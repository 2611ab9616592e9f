"""The change-point detector: an L2 cost from cumulative sums and a sliding-window estimator, in
ruptures' shape (``fit(signal)`` then ``predict(pen=...)``).

* :class:`CostL2Cumsum`: ruptures' L2 cost (sum of squared deviations from the segment mean)
  in O(1) per segment; ruptures' own ``CostL2`` recomputes a variance per call (6 ms per
  200-frame trajectory here, 0.9 ms with cumulative sums, same breakpoints).
* :class:`WindowL2`: ruptures' ``Window`` scores (how much splitting a window of ``width``
  frames at each position lowers the cost), computed for all positions at once; the
  score's peaks are the candidates. The signal is edge-padded by half a window so change
  points near the ends can be found. ``predict(pen)`` keeps the subset of candidates that
  minimises L2 cost + ``pen`` x number of change points, exactly (see
  :meth:`WindowL2.select` for why not ruptures' greedy stop), no segment shorter than
  ``min_size``; then each change point moves within ``refine_radius`` frames to where the
  cost of its two segments is least (the window's peaks are only as sharp as the signal).
"""
from __future__ import annotations

import numpy as np
from ruptures.base import BaseCost, BaseEstimator
from scipy.signal import argrelmax


class CostL2Cumsum(BaseCost):
    """ruptures' L2 cost in O(1) per segment from cumulative sums; a drop-in ``custom_cost``
    for ruptures estimators. ``cumsum`` and ``cumsum_sq`` are the sums of the signal and of
    its squared norm over the first i rows."""

    model = "l2_cumsum"

    def __init__(self):
        self.signal = None
        self.min_size = 1
        self.cumsum = self.cumsum_sq = None

    def fit(self, signal) -> "CostL2Cumsum":
        signal = np.asarray(signal, dtype=np.float64)
        self.signal = signal.reshape(-1, 1) if signal.ndim == 1 else signal
        zero = np.zeros((1, self.signal.shape[1]))
        self.cumsum = np.concatenate([zero, np.cumsum(self.signal, axis=0)])
        self.cumsum_sq = np.concatenate([[0.0], np.cumsum((self.signal ** 2).sum(axis=1))])
        return self

    def error(self, start, end) -> float:
        if end - start < self.min_size:
            from ruptures.costs import NotEnoughPoints

            raise NotEnoughPoints
        d = self.cumsum[end] - self.cumsum[start]
        # max(.., 0): cancellation can leave a tiny negative number for a constant segment
        return max(float(self.cumsum_sq[end] - self.cumsum_sq[start] - d @ d / (end - start)), 0.0)

    def errors(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The cost of many segments ``[start, end)`` at once (arrays of any equal shape)."""
        d = self.cumsum[end] - self.cumsum[start]
        length = np.maximum(end - start, 1)
        return np.maximum(self.cumsum_sq[end] - self.cumsum_sq[start] - (d * d).sum(axis=-1) / length, 0.0)


class WindowL2(BaseEstimator):
    """Sliding-window change-point detection with the L2 cost, exact penalised selection and refinement.

    width: window width in frames (even; its two halves are compared).
    min_size: shortest segment in frames (also the least distance of a change point from the ends).
    refine_radius: how far (frames) a chosen change point may move to lower its segments' cost.
    """

    def __init__(self, width: int = 10, min_size: int = 3, refine_radius: int = 3):
        self.width = width
        self.min_size = min_size
        self.refine_radius = refine_radius
        self.cost = CostL2Cumsum()
        self.n_samples = 0
        self.score = self.inds = self.candidates = None

    def fit(self, signal) -> "WindowL2":
        """Score every position of ``signal`` (n_samples, n_features) and find the candidates."""
        signal = np.asarray(signal, dtype=np.float64)
        signal = signal.reshape(-1, 1) if signal.ndim == 1 else signal
        self.n_samples = n = len(signal)
        self.cost.fit(signal)
        half = max(self.width // 2, 1)
        padded = CostL2Cumsum().fit(np.pad(signal, ((half, half), (0, 0)), mode="edge"))
        inds = np.arange(n + 2 * half)
        self.inds = k = inds[(inds >= half) & (inds < n + half)]
        self.score = padded.errors(k - half, k + half) - padded.errors(k - half, k) - padded.errors(k, k + half)
        # Candidates: the score's peaks, found as ruptures' Window._seg finds them.
        order = max(max(2 * half, 2 * self.min_size) // 2, 1)
        peaks = argrelmax(self.score, order=order, mode="wrap")[0]
        peaks = peaks[self.score[peaks] > 0]
        cands = self.inds[peaks] - half
        self.candidates = np.unique(cands[(cands >= self.min_size) & (cands <= n - self.min_size)])
        return self

    def predict(self, pen: float) -> list[int]:
        """Breakpoints as ruptures returns them: the change points (first index of each new
        segment), then ``n_samples``."""
        chosen = self.select(pen)
        return [*self.refine(chosen).tolist(), self.n_samples]

    def fit_predict(self, signal, pen: float) -> list[int]:
        return self.fit(signal).predict(pen)

    def select(self, pen: float) -> np.ndarray:
        """The subset of candidates minimising (L2 cost + ``pen`` x number of change points),
        exactly, by dynamic programming over the candidates.

        ruptures' ``Window.predict(pen=...)`` instead adds peaks greedily, highest first, and
        stops at the first one whose gain is below the penalty: with alternating segments
        (slow, fast, slow) no single change point pays off alone and it finds none.
        """
        pos = np.r_[0, self.candidates, self.n_samples].astype(np.int64)
        m = len(pos)
        # L2 cost of every segment [pos[i], pos[j]) at once; too short or reversed ones are inf
        a, b = np.meshgrid(pos, pos, indexing="ij")
        seg = self.cost.errors(a, b) + pen
        seg[(b - a) < self.min_size] = np.inf
        seg = seg.tolist()
        best = [0.0] + [np.inf] * (m - 1)
        prev = [0] * m
        for j in range(1, m):
            best[j], prev[j] = min((best[i] + seg[i][j], i) for i in range(j))
        out, j = [], m - 1
        while j > 0:
            j = prev[j]
            if j > 0:
                out.append(int(pos[j]))
        return np.array(sorted(out), dtype=np.int64)

    def refine(self, cps: np.ndarray) -> np.ndarray:
        """Move each change point, one at a time, to the position within +-``refine_radius``
        frames that minimises the L2 cost of its two neighbouring segments."""
        cps = cps.copy()
        n, radius, min_dwell = self.n_samples, self.refine_radius, self.min_size
        for i in range(len(cps)):
            left, right = (cps[i - 1] if i > 0 else 0), (cps[i + 1] if i + 1 < len(cps) else n)
            best, best_c = None, cps[i]
            for c in range(max(left + min_dwell, cps[i] - radius), min(right - min_dwell, cps[i] + radius) + 1):
                v = self.cost.error(left, c) + self.cost.error(c, right)
                if best is None or v < best:
                    best, best_c = v, c
            cps[i] = best_c
        return cps
