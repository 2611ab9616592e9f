"""Change points and segments from per-frame predictions (alpha(t), K(t), state(t)).

AnomalousNet's last stage: the networks' per-frame outputs are smoothed, a sliding-window
detector (ruptures ``Window``, L2 cost) finds where their mean changes, and each segment
gets its alpha, K and state.

* **Smoothing** (minimum dwell, 3 frames as in the paper): state runs shorter than
  ``min_dwell`` are absorbed by their longer neighbour; alpha and log K go through a
  running median of width ``2 * min_dwell - 1``, which removes excursions of fewer than
  ``min_dwell`` frames and keeps steps where they are.
* **Signal** for the detector, one row per frame: ``alpha``, ``log10(max(K, k_floor))``,
  the state probabilities divided by sqrt(2) (or, without them, the smoothed state's
  one-hot: any switch of state is then a jump of 1), and, when the positions are given,
  ``step_weight`` x log10 of the squared step (the networks see a window of frames and blur
  a change over a few of them; the raw steps place it, at the price of noise).
* **Detector**: ruptures' sliding ``Window`` with the L2 cost scores every frame by how
  much splitting the window there lowers the cost; the score's peaks are the candidate
  change points. ruptures' own ``CostL2`` recomputes a variance per call (6 ms per
  200-frame trajectory here); :class:`CostL2Cumsum` is the same cost from cumulative sums
  (0.9 ms, same breakpoints), and :class:`WindowL2` computes ruptures' window scores for
  all frames at once (same scores, a further 3x). The signal is edge-padded by half a window
  so change points near the ends can be found.
* **Selection**: among the candidates, the subset minimising L2 cost + penalty x number
  of change points (the criterion of ruptures' ``pen``), found exactly (see
  :func:`_select` for why not ruptures' greedy stop); no segment shorter than ``min_dwell``;
  then each change point moves within ``refine_radius`` frames to where the cost of its
  two segments is least.
* **Segment values**: alpha and K, the medians of the networks' values, refined on
  segments long enough by a time-averaged MSD fit of the positions (K from the fit; alpha
  blended, the fit's share growing with the segment's length); state, the argmax of the
  segment's mean state probabilities times ``state_prior``.
* **Defaults**: chosen on simulated AnDi-2 data with the official metrics, see
  :data:`TUNING` and ``benchmarks/tune_segments.py``.

Entry points: :func:`segment_track` (one track's predictions -> segments; used by the
AnDi submission writer) and :func:`segment_trajectories` (a whole shard, optionally over
a Dask cluster).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import ruptures as rpt
from ruptures.base import BaseCost
from scipy.ndimage import median_filter
from scipy.signal import argrelmax

from anomalousnet.inference import STATE_PROB_COLUMNS
from anomalousnet.msd import ANDI_NOISE, log_steps, msd_fit
from anomalousnet.store import Trajectories

SEGMENT_COLUMNS = ("particle", "start", "end", "alpha", "K", "state")
N_STATES = 4
IMMOBILE = 0

# How the defaults below were chosen (re-run: benchmarks/tune_segments.py --model default --grid ...).
TUNING = ("simulated AnDi-2 data of its own seed (100; 5 challenge-default experiments x 6 FOVs, 652 trajectories, "
          "plus the benchmark's directed-motion set, 267), predicted by the default model (4266073de9ec), scored "
          "with the official andi_datasets metrics. Change points: penalty 16/24/32/48 x step_weight 1/1.5/2 x "
          "refine_radius 0/2/3/4 (width 6/10/16 barely matters), with the other defaults below: penalty 16/20/24 "
          "(step_weight 1.5, radius 3) give Jaccard 0.928/0.917/0.906 at RMSE 0.77/0.75/0.73 frames (classical "
          "baseline 0.876, 0.79; with penalty 24 and no step column 0.852, 1.07); step_weight 2 or radius 4 no "
          "better. Chosen: the highest Jaccard whose RMSE stays below the classical baseline's, penalty 16 (K MSLE "
          "0.0060 vs 0.0064 at 24, state F1 0.928 vs 0.931). Segment values: MSD refinement "
          "lowers alpha MAE 0.171 -> 0.107 and K MSLE 0.021 -> 0.0064 (fit_max_lag 2/3/4/6/10/20: alpha 0.110/"
          "0.108/0.107/0.110/0.113/0.119; alpha_fit_frames 20/40/80: 0.109/0.107/0.107; blending K with the "
          "network's, or min_fit_frames 4-12, changes nothing). State prior (immobile, confined, free, directed): "
          "the network was trained with balanced class weights (free weighted 0.37, others 1.9-2.9); (1,1,1,1) "
          "gives state F1 0.859 with confined recall 0.58, (1,1,3,1.5) 0.913 with 0.30, (1,1,3.5,1.75) 0.931 "
          "with 0.27, (1,1,4,2) 0.932 with 0.18 (classical baseline: F1 0.888, confined recall 0.21); chosen "
          "(1,1,3.5,1.75): the highest F1 before confined recall collapses, with directed recall 0.85 on the "
          "directed set. Immobile segments get alpha 0 (AnDi-2 convention; both methods): alpha MAE 0.107 -> "
          "0.101, W1 alpha 0.041 -> 0.028. All defaults against the classical baseline: CP RMSE 0.77/0.79, "
          "Jaccard 0.928/0.876, alpha MAE 0.102/0.110, K MSLE 0.0060/0.0068, state F1 0.928/0.888 (values, "
          "state and ensemble figures above were measured at penalty 24).")


@dataclasses.dataclass(frozen=True)
class SegmentOptions:
    """Configuration of smoothing and change-point detection.

    penalty: minimum drop of the L2 cost (sum of squared deviations of the signal, in
        signal units^2 x frames) a change point must bring to be kept; larger -> fewer.
    width: sliding-window width in frames (even; the detector compares its two halves).
    min_dwell: shortest state run / segment, in frames (3 in the paper).
    weights: multipliers of the alpha, log10 K and state columns of the signal.
    k_floor: K values below it (immobile particles) count as k_floor in log10 K.
    step_weight: multiplier of the signal's log10 squared-step column (when positions are
        given; 0: off). The networks smooth over a few frames; the raw steps place a change
        of K to the frame.
    refine: refine the networks' segment values by an MSD fit of the segment's positions
        (when given and the segment has at least ``min_fit_frames`` frames): K from the fit,
        alpha a blend ``w * fit + (1 - w) * network`` with ``w = n / (n + alpha_fit_frames)``
        for a segment of n frames (the fit's error falls with n, the network's does not).
        The fit uses lags 1..min(``fit_max_lag``, n // 4): the short lags carry most of the
        information (longer ones are averages of few, correlated displacements).
    noise: localisation noise sigma (px) the MSD fits subtract (the AnDi-2 default 0.12).
    state_prior: per state (immobile, confined, free, directed), a multiplier of the mean
        state probability of a segment before its argmax: the shipped network was trained
        with balanced class weights, so it over-calls rare states where they are rare.
    immobile_alpha_zero: segments called immobile get alpha 0, the AnDi-2 convention for a
        particle held in place (an MSD slope there measures only localisation noise). Their
        K stays the fit's (near 0).
    """

    penalty: float = 16.0
    width: int = 10
    min_dwell: int = 3
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    k_floor: float = 1e-3
    step_weight: float = 1.5
    refine_radius: int = 3
    refine: bool = True
    min_fit_frames: int = 8
    fit_max_lag: int = 4
    alpha_fit_frames: float = 40.0
    noise: float = ANDI_NOISE
    state_prior: tuple[float, float, float, float] = (1.0, 1.0, 3.5, 1.75)
    immobile_alpha_zero: bool = True

    def __post_init__(self):
        if not self.penalty > 0:
            raise ValueError(f"penalty must be > 0, got {self.penalty}")
        if self.width < 2:
            raise ValueError(f"window width must be >= 2 frames, got {self.width}")
        if self.min_dwell < 1:
            raise ValueError(f"min_dwell must be >= 1 frame, got {self.min_dwell}")
        if self.refine_radius < 0:
            raise ValueError(f"refine_radius must be >= 0 frames, got {self.refine_radius}")
        if self.step_weight < 0 or self.alpha_fit_frames < 0 or self.noise < 0:
            raise ValueError(f"step_weight, alpha_fit_frames and noise must be >= 0, got {self.step_weight}, "
                             f"{self.alpha_fit_frames}, {self.noise}")
        if len(self.state_prior) != N_STATES or not all(p > 0 for p in self.state_prior):
            raise ValueError(f"state_prior needs {N_STATES} positive values, got {self.state_prior}")


class CostL2Cumsum(BaseCost):
    """ruptures' L2 cost (sum of squared deviations from the segment mean) in O(1) per
    segment from cumulative sums; a drop-in ``custom_cost`` for ruptures estimators."""

    model = "l2_cumsum"

    def __init__(self):
        self.signal = None
        self.min_size = 1

    def fit(self, signal) -> "CostL2Cumsum":
        signal = np.asarray(signal, dtype=np.float64)
        self.signal = signal.reshape(-1, 1) if signal.ndim == 1 else signal
        zero = np.zeros((1, self.signal.shape[1]))
        self._s1 = np.concatenate([zero, np.cumsum(self.signal, axis=0)])
        self._s2 = np.concatenate([[0.0], np.cumsum((self.signal ** 2).sum(axis=1))])
        return self

    def error(self, start, end) -> float:
        if end - start < self.min_size:
            from ruptures.costs import NotEnoughPoints

            raise NotEnoughPoints
        d = self._s1[end] - self._s1[start]
        # max(.., 0): cancellation can leave a tiny negative number for a constant segment
        return max(float(self._s2[end] - self._s2[start] - d @ d / (end - start)), 0.0)


class WindowL2(rpt.Window):
    """ruptures' ``Window`` with the L2 cost, its scores computed for all positions at once.

    ``rpt.Window.fit`` calls the cost three times per position from Python (two thirds of
    the time of :func:`change_points`); here the same scores come from cumulative sums in a
    few array operations. ``predict`` and everything else are ruptures' own.
    """

    def __init__(self, width: int = 100, min_size: int = 2, jump: int = 1):
        super().__init__(width=width, custom_cost=CostL2Cumsum(), min_size=min_size, jump=jump)

    def fit(self, signal) -> "WindowL2":
        signal = np.asarray(signal, dtype=np.float64)
        self.signal = signal.reshape(-1, 1) if signal.ndim == 1 else signal
        self.n_samples = self.signal.shape[0]
        inds = np.arange(self.n_samples, step=self.jump)
        half = self.width // 2
        self.inds = inds[(inds >= half) & (inds < self.n_samples - half)]
        self.cost.fit(self.signal)
        s1, s2 = self.cost._s1, self.cost._s2

        def err(a, b):
            d = s1[b] - s1[a]
            return np.maximum(s2[b] - s2[a] - (d * d).sum(axis=1) / (b - a), 0.0)

        k = self.inds
        self.score = err(k - half, k + half) - err(k - half, k) - err(k, k + half)
        return self


def smooth_state(state: np.ndarray, min_dwell: int = 3) -> np.ndarray:
    """Absorb state runs shorter than ``min_dwell`` into the longer neighbouring run
    (shortest first), until every run is at least ``min_dwell`` long or one run is left."""
    state = np.asarray(state).astype(np.int8, copy=True)
    if len(state) == 0 or min_dwell <= 1:
        return state
    change = np.flatnonzero(np.diff(state)) + 1
    starts = list(np.r_[0, change])
    values = [int(state[s]) for s in starts]
    lengths = list(np.diff(np.r_[starts, len(state)]))
    while len(lengths) > 1:
        i = int(np.argmin(lengths))
        if lengths[i] >= min_dwell:
            break
        left = lengths[i - 1] if i > 0 else -1
        right = lengths[i + 1] if i + 1 < len(lengths) else -1
        j = i - 1 if left >= right else i + 1  # merge into the longer neighbour (left on ties)
        lengths[j] += lengths[i]
        del lengths[i], values[i]
        # neighbours of equal value left and right now join into one run
        k = min(i, j)
        if 0 < k < len(values) and values[k - 1] == values[k]:
            lengths[k - 1] += lengths[k]
            del lengths[k], values[k]
        elif k + 1 < len(values) and values[k] == values[k + 1]:
            lengths[k] += lengths[k + 1]
            del lengths[k + 1], values[k + 1]
    return np.repeat(np.array(values, dtype=np.int8), lengths)


def smooth(alpha: np.ndarray, K: np.ndarray, state: np.ndarray, options: SegmentOptions = SegmentOptions()
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed (alpha, log10 K, state) of one track; see the module docstring."""
    size = 2 * options.min_dwell - 1
    logk = np.log10(np.maximum(np.asarray(K, dtype=np.float64), options.k_floor))
    alpha = np.asarray(alpha, dtype=np.float64)
    if size > 1 and len(alpha) > 1:
        alpha = median_filter(alpha, size=size, mode="nearest")
        logk = median_filter(logk, size=size, mode="nearest")
    return alpha, logk, smooth_state(state, options.min_dwell)


def detector_signal(alpha: np.ndarray, K: np.ndarray, state: np.ndarray,
                    options: SegmentOptions = SegmentOptions(), probs: np.ndarray | None = None,
                    x: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
    """The (n_frames, 2 + N_STATES [+ 1]) signal the detector runs on (smoothed and weighted).

    State columns: the state probabilities ``probs`` (n, N_STATES) when given (a change of
    confidence is visible before the argmax flips), else the smoothed state's one-hot. With
    positions ``x``, ``y`` and ``step_weight > 0``, a last column of log10 squared steps.
    """
    a, logk, s = smooth(alpha, K, state, options)
    wa, wk, ws = options.weights
    if probs is not None:
        states = ws / np.sqrt(2.0) * np.asarray(probs, dtype=np.float64)
    else:
        states = np.zeros((len(s), N_STATES))
        states[np.arange(len(s)), np.clip(s, 0, N_STATES - 1)] = ws / np.sqrt(2.0)
    columns = [wa * a, wk * logk, states]
    if x is not None and y is not None and options.step_weight > 0 and len(a) > 1:
        steps = log_steps(np.asarray(x, np.float64), np.asarray(y, np.float64)) / np.log(10.0)
        columns.append(options.step_weight * np.r_[steps[0], steps])  # step i-1 -> i belongs to frame i
    return np.column_stack(columns)


def change_points(alpha: np.ndarray, K: np.ndarray, state: np.ndarray,
                  options: SegmentOptions = SegmentOptions(), probs: np.ndarray | None = None,
                  x: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
    """Change points of one track: sorted frame indices c (0 < c < n), the first frame of
    each new segment, at least ``min_dwell`` frames from each other and from the ends."""
    n = len(alpha)
    if n < 2 * options.min_dwell:
        return np.zeros(0, dtype=np.int64)
    signal = detector_signal(alpha, K, state, options, probs, x, y)
    half = max(options.width // 2, 1)
    padded = np.pad(signal, ((half, half), (0, 0)), mode="edge")
    detector = WindowL2(width=2 * half, min_size=options.min_dwell, jump=1).fit(padded)
    # Candidates: the window score's peaks, found as ruptures' Window._seg finds them.
    order = max(max(2 * half, 2 * options.min_dwell) // 2, 1)
    peaks = argrelmax(detector.score, order=order, mode="wrap")[0]
    peaks = peaks[detector.score[peaks] > 0]
    cands = detector.inds[peaks] - half
    cands = np.unique(cands[(cands >= options.min_dwell) & (cands <= n - options.min_dwell)])
    cost = CostL2Cumsum().fit(signal)
    chosen = _select(cost, n, cands, options.penalty, options.min_dwell)
    return _refine(cost, n, chosen, options.refine_radius, options.min_dwell)


def _refine(cost: CostL2Cumsum, n: int, cps: np.ndarray, radius: int, min_dwell: int) -> np.ndarray:
    """Move each change point, one at a time, to the position within +-``radius`` frames that
    minimises the L2 cost of its two neighbouring segments (the window's peaks are only as
    sharp as the smoothed signal)."""
    cps = cps.copy()
    for i in range(len(cps)):
        left, right = (cps[i - 1] if i > 0 else 0), (cps[i + 1] if i + 1 < len(cps) else n)
        best, best_c = None, cps[i]
        for c in range(max(left + min_dwell, cps[i] - radius), min(right - min_dwell, cps[i] + radius) + 1):
            v = cost.error(left, c) + cost.error(c, right)
            if best is None or v < best:
                best, best_c = v, c
        cps[i] = best_c
    return cps


def _select(cost: CostL2Cumsum, n: int, cands: np.ndarray, penalty: float, min_dwell: int) -> np.ndarray:
    """The subset of candidate change points minimising (L2 cost + penalty x number of
    change points), exactly, by dynamic programming over the candidates.

    ruptures' ``Window.predict(pen=...)`` instead adds peaks greedily, highest first, and
    stops at the first one whose gain is below the penalty: with alternating segments
    (slow, fast, slow) no single change point pays off alone and it finds none.
    """
    pos = np.r_[0, cands, n].astype(np.int64)
    m = len(pos)
    # L2 cost of every segment [pos[i], pos[j]) at once; too short or reversed ones are inf
    a, b = np.meshgrid(pos, pos, indexing="ij")
    length = np.maximum(b - a, 1)
    d = cost._s1[b] - cost._s1[a]
    seg = np.maximum(cost._s2[b] - cost._s2[a] - (d * d).sum(axis=-1) / length, 0.0) + penalty
    seg[(b - a) < min_dwell] = np.inf
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


def _mode(values: np.ndarray) -> int:
    counts = np.bincount(np.clip(values, 0, N_STATES - 1).astype(np.int64), minlength=N_STATES)
    return int(np.argmax(counts))  # ties -> the lower state number, deterministic


def segment_track(alpha: np.ndarray, K: np.ndarray, state: np.ndarray,
                  options: SegmentOptions = SegmentOptions(), probs: np.ndarray | None = None,
                  x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One track's per-frame predictions (and optionally state probabilities ``probs``
    (n, N_STATES) and positions ``x``, ``y``) -> its segments.

    Returns columns ``start``, ``end`` (int64, frame indices within the track, end
    exclusive; contiguous, first start 0, last end ``len(alpha)``), ``alpha`` (median of
    the predictions in the segment), ``K`` (median), ``state`` (int8: with ``probs`` the
    argmax of their segment mean times ``state_prior``, else the most frequent smoothed
    state). With positions, alpha and K are refined by MSD fits (``options.refine``). Works
    for any length >= 1. Raises ValueError for unequal lengths.
    """
    alpha, K, state = np.asarray(alpha), np.asarray(K), np.asarray(state)
    n = len(alpha)
    if not (len(K) == n == len(state)) or n == 0 or (probs is not None and len(probs) != n) or \
            (x is not None and (y is None or not len(x) == len(y) == n)):
        raise ValueError(f"alpha, K, state (and probs, x, y when given) must have one equal length >= 1, got "
                         f"{len(alpha)}, {len(K)}, {len(state)}")
    cps = change_points(alpha, K, state, options, probs, x, y)
    bounds = np.r_[0, cps, n].astype(np.int64)
    smoothed_state = smooth_state(state, options.min_dwell)
    prior = np.asarray(options.state_prior, dtype=np.float64)
    fit = x is not None and options.refine
    seg_alpha, seg_k, seg_state = [], [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg_a, seg_K = np.median(alpha[a:b]), np.median(K[a:b])
        if fit and b - a >= options.min_fit_frames:
            fit_a, seg_K = msd_fit(x[a:b], y[a:b], options.fit_max_lag, options.noise)
            w = (b - a) / (b - a + options.alpha_fit_frames)
            seg_a = w * fit_a + (1 - w) * seg_a
        if probs is not None:
            seg_state.append(int(np.argmax(np.mean(probs[a:b], axis=0) * prior)))
        else:
            seg_state.append(_mode(smoothed_state[a:b]))
        if seg_state[-1] == IMMOBILE and options.immobile_alpha_zero:
            seg_a = 0.0
        seg_alpha.append(seg_a)
        seg_k.append(seg_K)
    return {"start": bounds[:-1], "end": bounds[1:], "alpha": np.array(seg_alpha, dtype=np.float32),
            "K": np.array(seg_k, dtype=np.float32), "state": np.array(seg_state, dtype=np.int8)}


def _segment_block(block: Mapping[str, np.ndarray], options: SegmentOptions) -> dict[str, np.ndarray]:
    """Segments of the tracks in one block (CSR arrays); runs on a Dask worker."""
    offsets, particle = block["offsets"], block["particle"]
    probs = block.get("probs")
    x, y = block.get("x"), block.get("y")
    parts = []
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        seg = segment_track(block["pred_alpha"][a:b], block["pred_K"][a:b], block["pred_state"][a:b], options,
                            None if probs is None else probs[a:b],
                            None if x is None else x[a:b], None if y is None else y[a:b])
        seg["particle"] = np.full(len(seg["start"]), particle[i], dtype=np.int64)
        parts.append(seg)
    return concat_segments(parts)


def empty_segments() -> dict[str, np.ndarray]:
    return {"particle": np.zeros(0, np.int64), "start": np.zeros(0, np.int64), "end": np.zeros(0, np.int64),
            "alpha": np.zeros(0, np.float32), "K": np.zeros(0, np.float32), "state": np.zeros(0, np.int8)}


def concat_segments(parts: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return empty_segments()
    return {c: np.concatenate([p[c] for p in parts]) for c in SEGMENT_COLUMNS}


def _blocks(traj: Trajectories, tracks_per_block: int) -> list[dict[str, np.ndarray]]:
    blocks = []
    for first in range(0, traj.n_tracks, tracks_per_block):
        last = min(first + tracks_per_block, traj.n_tracks)
        a, b = traj.offsets[first], traj.offsets[last]
        block = {name: np.asarray(traj.points[name][a:b]) for name in ("pred_alpha", "pred_K", "pred_state")}
        if all(c in traj.points for c in STATE_PROB_COLUMNS):
            block["probs"] = np.column_stack([np.asarray(traj.points[c][a:b]) for c in STATE_PROB_COLUMNS])
        for name in ("x", "y"):
            if name in traj.points:
                block[name] = np.asarray(traj.points[name][a:b], np.float64)
        block["offsets"] = traj.offsets[first:last + 1] - a
        block["particle"] = np.asarray(traj.tracks["particle"][first:last])
        blocks.append(block)
    return blocks


def segment_trajectories(traj: Trajectories, options: SegmentOptions = SegmentOptions(), client=None,
                         tracks_per_block: int = 500, progress: bool = False) -> dict[str, np.ndarray]:
    """Segments of every track of ``traj`` (which must hold ``pred_alpha``, ``pred_K``,
    ``pred_state``), as a table with columns :data:`SEGMENT_COLUMNS`, in track order.
    The state probabilities (:data:`anomalousnet.inference.STATE_PROB_COLUMNS`) and the
    positions ``x``, ``y`` are used when present (see :func:`segment_track`).

    With a ``distributed.Client``, blocks of ``tracks_per_block`` tracks run as Dask tasks;
    without one, in this process. Raises KeyError naming a missing prediction column.
    """
    for name in ("pred_alpha", "pred_K", "pred_state"):
        if name not in traj.points:
            raise KeyError(f"points/{name} is missing: run prediction first (anomalousnet-batch infer)")
    blocks = _blocks(traj, tracks_per_block)
    if client is None:
        return concat_segments([_segment_block(b, options) for b in blocks])
    from anomalousnet.parallel import map_as_completed

    results: dict[int, dict] = {}
    indexed = list(enumerate(blocks))
    for (i, _), result in map_as_completed(client, _segment_indexed, indexed, desc="segment", progress=progress,
                                           options=options):
        if isinstance(result, BaseException):
            raise result
        results[i] = result
    return concat_segments([results[i] for i in range(len(blocks))])


def _segment_indexed(item, options: SegmentOptions):
    return _segment_block(item[1], options)


def check_coverage(segments: Mapping[str, np.ndarray], traj: Trajectories) -> None:
    """Raise ValueError unless the segments cover every track exactly: per track, sorted,
    contiguous, first start 0, last end the track's length, no gaps or overlaps."""
    particle = np.asarray(segments["particle"])
    start, end = np.asarray(segments["start"]), np.asarray(segments["end"])
    pos = 0
    for pid, length in zip(traj.tracks["particle"], traj.lengths):
        expect = 0
        while pos < len(particle) and particle[pos] == pid:
            if start[pos] != expect or end[pos] <= start[pos]:
                raise ValueError(f"particle {pid}: segment [{start[pos]}, {end[pos]}) does not continue at {expect}")
            expect = end[pos]
            pos += 1
        if expect != length:
            raise ValueError(f"particle {pid}: segments end at {expect}, track has {length} frames")
    if pos != len(particle):
        raise ValueError(f"segment row {pos} (particle {particle[pos]}) belongs to no track, or tracks are out of order")
