"""Batched per-frame prediction of alpha, K and state with a model bundle.

Trajectories go through the networks in fixed-length windows (longer ones in overlapping
windows, stitched back); large batches through Keras' compiled predict function, on a GPU
when the backend sees one. Backend-agnostic: only Keras is used here.
"""
from __future__ import annotations

import numpy as np

from anomalousnet import features as ft
from anomalousnet.core.names import FREE, PRED_COLUMNS, STATE_PROB_COLUMNS
from anomalousnet.core.trajectories import Trajectories, measured_points
from anomalousnet.networks.bundle import Bundle


def _chunk_size(n: int, batch_size: int) -> int:
    """Batch shape for ``n`` windows: ``batch_size``, or the next power of two below it for few windows.

    Every chunk is padded to this shape, so the compiled predict function is traced once per
    shape (a handful of powers of two) instead of once per odd remainder.
    """
    return int(min(batch_size, 2 ** int(np.ceil(np.log2(max(n, 1))))))


def _predict_windows(net, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Run one head over all windows in fixed-shape chunks through Keras' compiled predict function."""
    n = len(inputs)
    if n == 0:
        return np.zeros((0,) + tuple(net.output_shape[1:]), np.float32)
    size = _chunk_size(n, batch_size)
    out = []
    for a in range(0, n, size):
        chunk = inputs[a:a + size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        out.append(np.asarray(net.predict_on_batch(chunk)))
    return np.concatenate(out)[:n]


def predict(bundle: Bundle, traj: Trajectories, batch_size: int = 1024, targets: tuple[str, ...] | None = None) -> dict:
    """Per-point predictions for every trajectory of ``traj`` .

    Returns a dict of arrays aligned with ``traj.points``: ``pred_alpha`` (float32),
    ``pred_K`` (float32, in the trajectory's length units squared per frame**alpha),
    ``pred_state`` (int8: 0 immobile, 1 confined, 2 free, 3 directed), its probabilities
    :data:`STATE_PROB_COLUMNS` (float32, one column per state), and per track
    ``fallback`` (bool): tracks shorter than the bundle's ``min_points`` do not go through
    the networks and get alpha 1, state 2 (free) and K from their mean squared step
    (:func:`anomalousnet.features.fallback_values`). Works for any track length >= 1.
    Tracks longer than the window are predicted in overlapping windows and stitched. Steps
    touching points tracking interpolated (``interpolated`` and not ``merged``) are missing
    inputs; those points still get predictions, from the measured steps around them.
    """
    cfg = bundle.features
    targets = targets or tuple(t for t in ("alpha", "K", "state") if t in bundle.targets)
    x = np.asarray(traj.points["x"], np.float64)
    y = np.asarray(traj.points["y"], np.float64)
    offsets = np.asarray(traj.offsets, np.int64)
    lengths = np.diff(offsets)
    fallback = lengths < cfg.min_points
    windows = ft.make_windows(x, y, offsets, np.flatnonzero(~fallback), cfg, measured_points(traj.points))
    n = int(offsets[-1])
    out = {}
    for target in targets:
        raw = _predict_windows(bundle.model(target), windows.inputs, batch_size)
        if target == "K":
            raw = ft.denormalise_K(raw.astype(np.float64), windows.scale[:, None])
        sums, weights = ft.stitch(raw, windows, offsets, cfg)
        covered = weights > 0
        if target == "state":
            values = np.full(n, FREE, np.int8)
            values[covered] = np.argmax(sums[covered], axis=-1).astype(np.int8)
            probs = np.zeros((n, len(STATE_PROB_COLUMNS)), np.float32)
            probs[:, FREE] = 1.0  # uncovered points (fallback tracks) are free
            probs[covered] = sums[covered] / weights[covered, None]
            out.update({c: probs[:, k].copy() for k, c in enumerate(STATE_PROB_COLUMNS)})
        else:
            values = np.zeros(n, np.float32)
            values[covered] = (sums[covered] / weights[covered]).astype(np.float32)
        out[f"pred_{target}"] = values
    for i in np.flatnonzero(fallback):
        a, b = offsets[i], offsets[i + 1]
        alpha, K, state = ft.fallback_values(x[a:b], y[a:b])
        for target, value in (("alpha", alpha), ("K", K), ("state", state)):
            if f"pred_{target}" in out:
                out[f"pred_{target}"][a:b] = value
    out["fallback"] = fallback
    return out


def with_predictions(traj: Trajectories, predictions: dict) -> Trajectories:
    """``traj`` with the per-point prediction columns of :func:`predict` added
    (:data:`~anomalousnet.core.names.PRED_COLUMNS`), as the segment stage reads them."""
    return traj.with_points({c: predictions[c] for c in PRED_COLUMNS if c in predictions})


def compute_device() -> str:
    """Where the networks run: a GPU the Keras backend sees, else the CPU (for the run's log)."""
    from anomalousnet.networks.backend import import_keras

    backend = import_keras().backend.backend()
    gpus: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    elif backend == "jax":
        import jax

        gpus = [str(d) for d in jax.devices() if d.platform == "gpu"]
    elif backend == "torch":
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{backend}: " + (f"GPU ({', '.join(gpus)})" if gpus else "CPU (no GPU visible)")
