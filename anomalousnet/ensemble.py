"""Per-field-of-view ensembles: the distribution of alpha and K in each diffusive state.

For each predicted state present in a field of view (one video, CSV or shard): the mean
and variance of alpha and of K over that state's segments, each segment weighted by its
number of frames (the variances less the segments' own measurement error), and the
state's weight (its share of all frames). This is the AnDi-2
ensemble task's content; :func:`andi_matrix` lays it out as ``ensemble_labels.txt``
holds it (rows: mean alpha, variance alpha, mean K, variance K, weight; one column per
state); :func:`ensemble_from_labels` summarises an AnDi-2 experiment's segments, with each
state split by the K clustering of :func:`split_by_K`.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

from anomalousnet.core.names import IMMOBILE
from anomalousnet.io.andi_files import EnsembleLabel, TrajectoryLabel, labels_to_segments
from anomalousnet.segments.pooling import ALPHA_ERROR, LOGK_ERROR, error_variance, k_clusters

ENSEMBLE_COLUMNS = ("state", "alpha_mean", "alpha_var", "K_mean", "K_var", "weight", "n_segments", "n_frames")


@dataclasses.dataclass(frozen=True)
class EnsembleNoise:
    """The segments' measurement error, taken off the ensembles' variances so that they
    describe the particles rather than the measurement (benchmarks/TUNING.md, "How the
    ensembles' spread was chosen"). alpha, logk: (a, b) of a segment's error variance
    ``a + b / n_frames`` of alpha and of log10 K (None: keep the measured variance);
    k_floor: K's variance stays at least this share of the measured one (K's spread within a
    state is small next to K, so the difference is unstable). alpha defaults to 0.75 of
    pooling's error model (the rest is shared by a FOV's segments: a bias that does not widen
    the spread), logk to pooling's."""

    alpha: tuple[float, float] | None = (0.75 * ALPHA_ERROR[0], 0.75 * ALPHA_ERROR[1])
    logk: tuple[float, float] | None = LOGK_ERROR
    k_floor: float = 0.25


NOISE = EnsembleNoise()


def fov_ensemble(segments: Mapping[str, np.ndarray], noise: EnsembleNoise | None = NOISE) -> dict[str, np.ndarray]:
    """Ensemble table of one field of view from its segments table (columns start, end,
    alpha, K, state; ``alpha_single`` and ``K_single``, the values before pooling, in place of
    alpha and K when present): one row per state present (per ``group`` when that column is
    there), in state order, columns :data:`ENSEMBLE_COLUMNS`. Weights sum to 1; an empty
    input gives an empty table.

    ``noise``: the measurement error taken off the variances (:class:`EnsembleNoise`; None:
    the measured variances). Immobile states (alpha 0 and K near 0 by convention) are left
    as measured."""
    frames = (np.asarray(segments["end"]) - np.asarray(segments["start"])).astype(np.float64)
    # each segment's own values when the pipeline pooled them (pooled values understate the spread)
    alpha = np.asarray(segments.get("alpha_single", segments["alpha"]), np.float64)
    K = np.asarray(segments.get("K_single", segments["K"]), np.float64)
    state = np.asarray(segments["state"], np.int64)
    group = np.asarray(segments.get("group", state), np.int64)
    # a brief episode (anomalousnet.segments.episodes) has no values of its own (NaN singles):
    # its frames count in its state's weight, not in the moments (unless its state has nothing else)
    own = np.isfinite(alpha) & np.isfinite(K)
    alpha = np.where(own, alpha, np.asarray(segments["alpha"], np.float64))
    K = np.where(own, K, np.asarray(segments["K"], np.float64))
    rows = {c: [] for c in ENSEMBLE_COLUMNS}
    total = frames.sum()
    for s in np.unique(group):
        m = group == s
        n_frames, n_segments = frames[m].sum(), m.sum()
        if (m & own).any():
            m &= own
        w = frames[m] / frames[m].sum()
        a_mean, k_mean = float(w @ alpha[m]), float(w @ K[m])
        a_var = float(w @ (alpha[m] - a_mean) ** 2)
        correct = noise is not None and not np.all(state[m] == IMMOBILE)
        if correct and noise.alpha is not None:
            a_var = max(0.0, a_var - float(w @ error_variance(frames[m], noise.alpha)))
        rows["state"].append(int(s))
        rows["alpha_mean"].append(a_mean)
        rows["alpha_var"].append(a_var)
        rows["K_mean"].append(k_mean)
        k_var = float(w @ (K[m] - k_mean) ** 2)
        if correct and noise.logk is not None:
            # a log10 K error of variance s2 spreads K by K^2 (1 - exp(-ln(10)^2 s2))
            s2 = np.log(10.0) ** 2 * error_variance(frames[m], noise.logk)
            k_var = max(noise.k_floor * k_var, k_var - float(w @ (K[m] ** 2 * (1 - np.exp(-s2)))))
        rows["K_var"].append(k_var)
        rows["weight"].append(float(n_frames / total))
        rows["n_segments"].append(int(n_segments))
        rows["n_frames"].append(int(n_frames))
    dtypes = {"state": np.int8, "n_segments": np.int64, "n_frames": np.int64}
    return {c: np.array(v, dtype=dtypes.get(c, np.float64)) for c, v in rows.items()}


def ensemble_of(segments: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`fov_ensemble` of the segments marked ``in_ensemble`` (all when there is no such
    column): fallback and too-short trajectories stay in the tables but not in the ensemble."""
    if "in_ensemble" not in segments:
        return fov_ensemble(segments)
    keep = np.asarray(segments["in_ensemble"], bool)
    columns = ("start", "end", "alpha", "K", "state", "alpha_single", "K_single")
    return fov_ensemble({c: np.asarray(segments[c])[keep] for c in columns if c in segments})


def andi_matrix(ensemble: Mapping[str, np.ndarray]) -> np.ndarray:
    """The (5, n_states) matrix of AnDi-2's ``ensemble_labels.txt`` (mean alpha, variance
    alpha, mean K, variance K, weight), as ``andi_datasets.utils_challenge`` reads it."""
    return np.vstack([np.asarray(ensemble[c], np.float64)
                      for c in ("alpha_mean", "alpha_var", "K_mean", "K_var", "weight")])


def ensemble_from_labels(labels: Iterable[TrajectoryLabel], model: str = "predicted",
                         split_K: bool = True, noise: EnsembleNoise | None = NOISE) -> EnsembleLabel:
    """Ensemble of an experiment from its trajectories' segments (:func:`anomalousnet.ensemble.fov_ensemble`:
    one column per group, frame-weighted means and variances of alpha and K, weights the share of
    frames). Groups are the predicted states, each split in two by :func:`split_by_K` when its K
    values form two separate clusters (``split_K``). The W1 metric compares the mixtures, so
    the column order does not matter. ``noise``: as for :func:`fov_ensemble`."""
    segments = labels_to_segments(labels)
    if split_K:
        segments["group"] = split_by_K(segments)
    table = fov_ensemble(segments, noise)
    if not len(table["state"]):
        return EnsembleLabel(model, np.array([[1.0], [0.0], [1.0], [0.0], [1.0]]))
    return EnsembleLabel(model, andi_matrix(table))


def split_by_K(segments: Mapping[str, np.ndarray], min_gap_sd: float = 4.0, min_gap_decades: float = 0.7,
               min_weight: float = 0.05, k_floor: float = 1e-3) -> np.ndarray:
    """Group labels for the ensemble: the predicted state, and within a state two groups when
    its segments' log10 K fall into two well-separated clusters (the best frame-weighted split,
    :func:`~anomalousnet.segments.pooling.k_clusters`; kept when the cluster means are more
    than ``min_gap_decades`` and ``min_gap_sd`` pooled standard deviations apart, and each
    holds at least ``min_weight`` of the state's frames). The challenge's two-state, dimer
    and confinement experiments have states of the same kind whose K differ 10-100x: one
    column per predicted state would merge them into one broad population."""
    state = np.asarray(segments["state"], np.int64)
    w = (np.asarray(segments["end"]) - np.asarray(segments["start"])).astype(np.float64)
    logk = np.log10(np.maximum(np.asarray(segments["K"], np.float64), k_floor))
    group = state * 2
    for s in np.unique(state):
        m = np.flatnonzero(state == s)
        if len(m) < 4:
            continue
        parts = k_clusters(logk[m], w[m], min_gap_decades, min_share=min_weight)
        if len(parts) == 1:
            continue
        lo, hi = m[parts[0]], m[parts[1]]
        means = [np.average(logk[p], weights=w[p]) for p in (lo, hi)]
        within = sum(float(w[p] @ (logk[p] - c) ** 2) for p, c in zip((lo, hi), means))
        if means[1] - means[0] > min_gap_sd * max(np.sqrt(within / w[m].sum()), 1e-6):
            group[hi] += 1
    return group
