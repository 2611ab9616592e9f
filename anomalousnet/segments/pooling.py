"""Pooling segment values over a field of view (empirical Bayes).

One segment's alpha and K are noisy: from a 200-frame segment the pipeline's alpha is off by
about 0.08, from a 30-frame one by 0.2 (``benchmarks/TUNING.md``). The segments of one
diffusive state of one FOV (or of one condition's FOVs) share their parameters up to the
particles' own spread, so each value is drawn toward its group's mean, the more the noisier
it is:

* **Groups**: per group value (e.g. FOV or experiment) and called state (immobile segments
  are left alone: alpha 0 and K near 0 by convention); a state whose segments' log10 K fall
  into two clusters more than ``split_decades`` apart (Otsu's split, frame-weighted: e.g.
  a dimer and a free monomer, both called free) is two groups.
* **Shrinkage**, per group of at least ``min_segments`` segments, for alpha and for log10 K:
  a segment of n frames has error variance ``s2 = a + b / n`` (``alpha_error``,
  ``logk_error``: measured on simulated data of a tuning seed); the group's spread ``tau2``
  is the mean of ``(value - mean)^2 - s2`` (at least 0) and its mean the inverse-variance
  weighted mean, iterated; a value becomes ``mean + tau2 / (tau2 + s2) * (value - mean)``.
  A group whose particles truly differ keeps its spread (large ``tau2``, little shrinkage);
  one whose spread is all noise is drawn to its mean.
* **Directed** segments get only K pooled (``pool_alpha_states``): a called directed state
  often holds free segments too (alpha near 1 among alphas near 2), and pooling their alpha
  cost more than it gained on a tuning seed's directed set.

Each segment's own values stay in ``alpha_single`` and ``K_single``: the per-FOV ensembles
(:mod:`anomalousnet.ensemble`) describe the population from them, since the pooled values'
spread understates the particles' own (it is ``tau2`` shrunk, and 0 where noise hides it).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from anomalousnet.core.names import IMMOBILE

# A segment's error variance a + b / n_frames for its own alpha and log10 K (measured on a
# tuning seed, benchmarks/TUNING.md): SegmentOptions' defaults and the ensembles' noise model.
# alpha's b was 0.96 with the 3-level alpha network; the 5-level one errs less per segment.
ALPHA_ERROR = (0.001, 0.8)
LOGK_ERROR = (0.002, 1.0)


def error_variance(n_frames: np.ndarray, error: tuple[float, float]) -> np.ndarray:
    """``a + b / n`` for each segment length ``n``, ``error`` = (a, b)."""
    return error[0] + error[1] / np.maximum(np.asarray(n_frames, np.float64), 1.0)


def shrink(values: np.ndarray, s2: np.ndarray, iterations: int = 20, low_outlier_z: float | None = None
           ) -> np.ndarray:
    """Empirical-Bayes posterior means of ``values`` with error variances ``s2`` under a
    normal prior whose mean and variance are estimated from them (moments, iterated).

    ``low_outlier_z``: a value more than this many of its own sds (``sqrt(tau2 + s2)``) below
    the mean is left as it is and out of the moments. For log10 K such a segment is most
    likely of a slower population (a 10-frame dimer among free monomers, too few frames to
    be a K cluster of its own), which a normal prior would draw all the way into the
    majority's mean; a value far above the mean is more often a failed estimate (directed
    motion or a tracking jump inflates K), which pooling repairs."""
    values, s2 = np.asarray(values, np.float64), np.asarray(s2, np.float64)
    keep = np.ones(len(values), bool)
    mean, tau2 = 0.0, 0.0
    for _ in range(iterations):
        w = 1.0 / (tau2 + s2[keep])
        mean = float(np.sum(w * values[keep]) / np.sum(w))
        tau2 = max(0.0, float(np.mean((values[keep] - mean) ** 2 - s2[keep])))
        if low_outlier_z is not None:
            inside = values - mean >= -low_outlier_z * np.sqrt(tau2 + s2)
            if inside.sum() >= 2:
                keep = inside
    return np.where(keep, mean + tau2 / (tau2 + s2) * (values - mean), values)


def k_clusters(logk: np.ndarray, weights: np.ndarray, split_decades: float, min_share: float = 0.05
               ) -> list[np.ndarray]:
    """Index arrays of one or two clusters of ``logk``: two when the best weighted split
    (least within-cluster sum of squares, each side at least ``min_share`` of the weight)
    leaves cluster means more than ``split_decades`` apart, else one."""
    order = np.argsort(logk, kind="stable")
    lk, w = logk[order], weights[order]
    cw, cwx, cwx2 = np.cumsum(w), np.cumsum(w * lk), np.cumsum(w * lk * lk)
    total, best, cut, gap = cw[-1], np.inf, None, 0.0
    for i in range(1, len(lk)):
        wa, wb = cw[i - 1], total - cw[i - 1]
        if wa < min_share * total or wb < min_share * total:
            continue
        sa, sb = cwx[i - 1], cwx[-1] - cwx[i - 1]
        within = (cwx2[i - 1] - sa * sa / wa) + (cwx2[-1] - cwx2[i - 1] - sb * sb / wb)
        if within < best:
            best, cut, gap = within, i, sb / wb - sa / wa
    if cut is None or gap <= split_decades:
        return [np.arange(len(logk))]
    return [np.sort(order[:cut]), np.sort(order[cut:])]


def pool_values(segments: Mapping[str, np.ndarray], options, groups: np.ndarray | None = None,
                exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The segments table with alpha and K pooled (see the module docstring) and the values
    before pooling in ``alpha_single`` and ``K_single``; ``options`` a
    :class:`~anomalousnet.segments.segmentation.SegmentOptions` (``alpha_error``,
    ``logk_error``, ``split_decades``, ``min_segments``, ``pool_alpha_states``, ``k_floor``). ``groups``: one value per
    segment (None: one group); ``exclude``: segments left out and unchanged (e.g. the
    fallbacks of tracks too short for the networks). Rows marked in an ``episode`` column are
    left out too, with NaN ``alpha_single`` and ``K_single`` (no values of their own)."""
    out = {c: np.asarray(v) for c, v in segments.items()}
    n = (out["end"] - out["start"]).astype(np.float64)
    state = np.asarray(out["state"])
    alpha = np.asarray(out["alpha"], np.float64).copy()
    logk = np.log10(np.maximum(np.asarray(out["K"], np.float64), options.k_floor))
    pooled_logk = logk.copy()
    groups = np.zeros(len(n), np.int64) if groups is None else np.asarray(groups)
    use = state != IMMOBILE
    if exclude is not None:
        use &= ~np.asarray(exclude, bool)
    episode = np.asarray(out.get("episode", np.zeros(len(n), bool)), bool)
    use &= ~episode
    for g in np.unique(groups[use]):
        for s in np.unique(state[use & (groups == g)]):
            rows = np.flatnonzero(use & (groups == g) & (state == s))
            for part in k_clusters(logk[rows], n[rows], options.split_decades):
                r = rows[part]
                if len(r) < options.min_segments:
                    continue
                if s in options.pool_alpha_states:
                    alpha[r] = shrink(alpha[r], error_variance(n[r], options.alpha_error))
                pooled_logk[r] = shrink(logk[r], error_variance(n[r], options.logk_error),
                                       low_outlier_z=options.slow_outlier_z)
    # values at the floor stay where they were (log10 K there is the floor, not a measurement)
    K = np.where(logk > np.log10(options.k_floor), 10.0 ** pooled_logk, np.asarray(out["K"], np.float64))
    # a brief episode (anomalousnet.segments.episodes) has its level's values, none of its own
    out["alpha_single"] = np.where(episode, np.nan, out["alpha"]).astype(out["alpha"].dtype)
    out["K_single"] = np.where(episode, np.nan, out["K"]).astype(out["K"].dtype)
    out["alpha"] = alpha.astype(np.asarray(segments["alpha"]).dtype)
    out["K"] = K.astype(np.asarray(segments["K"]).dtype)
    return out


def pool_by(traj, segments: Mapping[str, np.ndarray], options, column: str | None = None) -> dict[str, np.ndarray]:
    """:func:`pool_values` on the segments of ``traj`` (a Trajectories), grouped by the track
    column ``column`` (None: all one group); the segments of tracks flagged in the track
    column ``fallback`` (too short for the networks) are left out."""
    return pool_values(segments, options, *segment_groups(traj, segments, column))


def segment_groups(traj, segments: Mapping[str, np.ndarray], column: str | None
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per segment of ``traj``'s tracks: its group, the value of the track column ``column``
    (None: one group), and whether its track is flagged in the track column ``fallback``
    (None when there is no such column)."""
    row_of = {p: i for i, p in enumerate(np.asarray(traj.tracks["particle"]).tolist())}
    rows = np.array([row_of[p] for p in np.asarray(segments["particle"]).tolist()], dtype=np.int64)
    groups = None if column is None else np.asarray(traj.tracks[column])[rows]
    fallback = traj.tracks.get("fallback")
    return groups, None if fallback is None else np.asarray(fallback, bool)[rows]
