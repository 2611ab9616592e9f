"""Per-field-of-view ensembles: the distribution of alpha and K in each diffusive state.

For each predicted state present in a field of view (one video, CSV or shard): the mean
and variance of alpha and of K over that state's segments, each segment weighted by its
number of frames, and the state's weight (its share of all frames). This is the AnDi-2
ensemble task's content; :func:`andi_matrix` lays it out as ``ensemble_labels.txt``
holds it (rows: mean alpha, variance alpha, mean K, variance K, weight; one column per
state); :func:`ensemble_from_labels` summarises an AnDi-2 experiment's segments, with each
state split by the K clustering of :func:`split_by_K`.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from anomalousnet.io.andi_files import EnsembleLabel, TrajectoryLabel, labels_to_segments

ENSEMBLE_COLUMNS = ("state", "alpha_mean", "alpha_var", "K_mean", "K_var", "weight", "n_segments", "n_frames")


def fov_ensemble(segments: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ensemble table of one field of view from its segments table (columns start, end,
    alpha, K, state; ``alpha_single`` and ``K_single``, the values before pooling, in place of
    alpha and K when present): one row per state present, in state order, columns
    :data:`ENSEMBLE_COLUMNS`. Weights sum to 1; an empty input gives an empty table."""
    frames = (np.asarray(segments["end"]) - np.asarray(segments["start"])).astype(np.float64)
    # each segment's own values when the pipeline pooled them (pooled values understate the spread)
    alpha = np.asarray(segments.get("alpha_single", segments["alpha"]), np.float64)
    K = np.asarray(segments.get("K_single", segments["K"]), np.float64)
    state = np.asarray(segments["state"], np.int64)
    rows = {c: [] for c in ENSEMBLE_COLUMNS}
    total = frames.sum()
    for s in np.unique(state):
        m = state == s
        w = frames[m] / frames[m].sum()
        a_mean, k_mean = float(w @ alpha[m]), float(w @ K[m])
        rows["state"].append(int(s))
        rows["alpha_mean"].append(a_mean)
        rows["alpha_var"].append(float(w @ (alpha[m] - a_mean) ** 2))
        rows["K_mean"].append(k_mean)
        rows["K_var"].append(float(w @ (K[m] - k_mean) ** 2))
        rows["weight"].append(float(frames[m].sum() / total))
        rows["n_segments"].append(int(m.sum()))
        rows["n_frames"].append(int(frames[m].sum()))
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
                         split_K: bool = True) -> EnsembleLabel:
    """Ensemble of an experiment from its trajectories' segments (:func:`anomalousnet.ensemble.fov_ensemble`:
    one column per group, frame-weighted means and variances of alpha and K, weights the share of
    frames). Groups are the predicted states, each split in two by :func:`split_by_K` when its K
    values form two separate clusters (``split_K``). The W1 metric compares the mixtures, so
    the column order does not matter."""
    segments = labels_to_segments(labels)
    if split_K:
        segments["state"] = split_by_K(segments)
    table = fov_ensemble(segments)
    if not len(table["state"]):
        return EnsembleLabel(model, np.array([[1.0], [0.0], [1.0], [0.0], [1.0]]))
    return EnsembleLabel(model, andi_matrix(table))


def split_by_K(segments: Mapping[str, np.ndarray], min_gap_sd: float = 4.0, min_gap_decades: float = 0.7,
               min_weight: float = 0.05, k_floor: float = 1e-3) -> np.ndarray:
    """Group labels for the ensemble: the predicted state, and within a state two groups when
    its segments' log10 K fall into two well-separated clusters (weighted 2-means; kept when
    the cluster means are more than ``min_gap_sd`` pooled standard deviations and
    ``min_gap_decades`` apart, and each holds at least ``min_weight`` of the state's frames). The challenge's two-state, dimer
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
        x, ww = logk[m], w[m]
        centres = np.array([np.quantile(x, 0.25), np.quantile(x, 0.75)])
        if centres[1] - centres[0] <= 0:
            continue
        for _ in range(30):
            hi = np.abs(x - centres[1]) < np.abs(x - centres[0])
            if hi.all() or not hi.any():
                break
            new = np.array([np.average(x[~hi], weights=ww[~hi]), np.average(x[hi], weights=ww[hi])])
            if np.allclose(new, centres):
                break
            centres = new
        if hi.all() or not hi.any():
            continue
        resid = np.where(hi, x - centres[1], x - centres[0])
        sd = np.sqrt(np.average(resid ** 2, weights=ww))
        frac = ww[hi].sum() / ww.sum()
        gap = centres[1] - centres[0]
        if gap > min_gap_sd * max(sd, 1e-6) and gap > min_gap_decades and min_weight <= frac <= 1 - min_weight:
            group[m[hi]] += 1
    return group
