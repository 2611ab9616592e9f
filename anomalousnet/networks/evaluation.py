"""Held-out figures of a model bundle on labelled stores: per-frame alpha MAE, K MSLE, state
accuracy and recall per state, overall and per diffusion model (recorded in model.json)."""
from __future__ import annotations

import numpy as np

from anomalousnet.core.names import STATE_NAMES
from anomalousnet.io import store as st
from anomalousnet.networks.predict import predict
from anomalousnet.networks.training_data import data_provenance, resolve_shards


def frame_metrics(alpha, K, state, pred_alpha, pred_K, pred_state) -> dict:
    """Per-frame figures: alpha MAE, K MSLE (in the data's units), state accuracy and recall per state."""
    out = {"frames": int(len(alpha))}
    if not len(alpha):
        return out
    out["alpha_mae"] = float(np.mean(np.abs(pred_alpha - alpha)))
    out["K_msle"] = float(np.mean((np.log1p(np.maximum(K, 0)) - np.log1p(np.maximum(pred_K, 0))) ** 2))
    out["state_accuracy"] = float(np.mean(pred_state == state))
    for k, name in enumerate(STATE_NAMES):
        sel = state == k
        out[f"recall_{name}"] = float(np.mean(pred_state[sel] == k)) if sel.any() else None
        out[f"frames_{name}"] = int(sel.sum())
    return out


def evaluate(bundle, data: list[str] | str, batch_size: int = 1024, progress: bool = True) -> dict:
    """Per-frame figures of a bundle on labelled (held-out) training stores: overall and per model.

    Tracks too short for the networks (fallback values) are counted too: they are what
    users get. K MSLE is computed on K in the data's units (px^2/frame^alpha), as AnDi-2 does.
    """
    shards = resolve_shards(data)
    cols = {k: [] for k in ("alpha", "K", "state", "pred_alpha", "pred_K", "pred_state", "model")}
    iterator = shards
    if progress:
        from tqdm import tqdm
        iterator = tqdm(shards, desc="evaluate", unit="shard")
    for path in iterator:
        traj = st.read_shard(path).trajectories
        pred = predict(bundle, traj, batch_size=batch_size)
        for k in ("alpha", "K", "state"):
            cols[k].append(np.asarray(traj.points[k]))
            cols["pred_" + k].append(pred["pred_" + k])
        models = traj.tracks.get("model", np.full(traj.n_tracks, "unknown"))
        cols["model"].append(np.repeat(np.asarray(models), traj.lengths))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    args = lambda sel: (c["alpha"][sel], c["K"][sel], c["state"][sel],  # noqa: E731
                        c["pred_alpha"][sel], c["pred_K"][sel], c["pred_state"][sel])
    every = np.ones(len(c["alpha"]), bool)
    result = {"data": data_provenance(shards), "overall": frame_metrics(*args(every)), "per_model": {}}
    for name in sorted(set(c["model"].tolist())):
        result["per_model"][name] = frame_metrics(*args(c["model"] == name))
    return result
