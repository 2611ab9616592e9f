"""Per-field-of-view ensembles: the distribution of alpha and K in each diffusive state.

For each predicted state present in a field of view (one video, CSV or shard): the mean
and variance of alpha and of K over that state's segments, each segment weighted by its
number of frames, and the state's weight (its share of all frames). This is the AnDi-2
ensemble task's content; :func:`andi_matrix` lays it out as ``ensemble_labels.txt``
holds it (rows: mean alpha, variance alpha, mean K, variance K, weight; one column per
state), and :func:`format_andi` writes that text.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

ENSEMBLE_COLUMNS = ("state", "alpha_mean", "alpha_var", "K_mean", "K_var", "weight", "n_segments", "n_frames")


def fov_ensemble(segments: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ensemble table of one field of view from its segments table (columns start, end,
    alpha, K, state): one row per state present, in state order, columns
    :data:`ENSEMBLE_COLUMNS`. Weights sum to 1; an empty input gives an empty table."""
    frames = (np.asarray(segments["end"]) - np.asarray(segments["start"])).astype(np.float64)
    alpha = np.asarray(segments["alpha"], np.float64)
    K = np.asarray(segments["K"], np.float64)
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


def andi_matrix(ensemble: Mapping[str, np.ndarray]) -> np.ndarray:
    """The (5, n_states) matrix of AnDi-2's ``ensemble_labels.txt`` (mean alpha, variance
    alpha, mean K, variance K, weight), as ``andi_datasets.utils_challenge`` reads it."""
    return np.vstack([np.asarray(ensemble[c], np.float64)
                      for c in ("alpha_mean", "alpha_var", "K_mean", "K_var", "weight")])


def format_andi(ensemble: Mapping[str, np.ndarray], model: str = "predicted") -> str:
    """Text of an AnDi-2 ``ensemble_labels.txt`` for this ensemble (header, 5 ';' rows)."""
    matrix = andi_matrix(ensemble)
    body = "\n".join(";".join(repr(float(v)) for v in row) for row in matrix)
    return f"model: {model}; num_state: {matrix.shape[1]} \n{body}\n"
