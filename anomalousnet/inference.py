"""Model bundles (weights + model.json), and batched per-frame prediction of alpha, K and state.

A bundle is a directory::

    model.json            format, package version, input (window length, overlap, scaling),
                          per head: preset, filters, weights file, training data and command,
                          validation metrics
    alpha.weights.h5      Keras weights of each head (rebuilt from model.json, then loaded)
    K.weights.h5
    state.weights.h5

``load_bundle("default")`` (or no spec) opens the model shipped in the package
(anomalousnet/models/default). Everything here uses Keras layers and ``keras.ops`` only,
so a bundle predicts under any Keras backend (TensorFlow, JAX, PyTorch).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from anomalousnet import __version__
from anomalousnet import features as ft

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "anomalousnet-model"
BUNDLE_VERSION = 1
META_NAME = "model.json"
DEFAULT_BUNDLE = Path(__file__).with_name("models") / "default"
# Per-point probability of each state (the state head's softmax, averaged over windows).
STATE_PROB_COLUMNS = tuple(f"pred_p_{name}" for name in ft.STATES)


class BundleError(ValueError):
    """A model bundle is missing, incomplete or of another format; names the path."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


def weights_name(target: str) -> str:
    return f"{target}.weights.h5"


def bundle_sha256(path: os.PathLike | str) -> str:
    """One checksum over model.json and the weight files (recorded in provenance of predictions)."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and (p.name == META_NAME or p.suffix == ".h5")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclasses.dataclass
class Bundle:
    """An opened model bundle. ``models`` are built on first use (Keras is imported lazily)."""

    path: Path
    meta: dict
    sha256: str
    models: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def features(self) -> ft.FeatureConfig:
        return ft.FeatureConfig(**self.meta["input"]["features"])

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.meta["heads"])

    def model(self, target: str):
        """The Keras model of one head, built from model.json and loaded with its weights."""
        if target not in self.meta["heads"]:
            raise BundleError(self.path, f"has no {target!r} head (heads: {', '.join(self.targets)})")
        if target not in self.models:
            from anomalousnet import model as mdl

            head = self.meta["heads"][target]
            net = mdl.build_unet(target, tuple(head["filters"]), self.features.length)
            net.load_weights(self.path / head["weights"])
            self.models[target] = net
        return self.models[target]


def read_meta(path: os.PathLike | str) -> dict:
    """Read and check a bundle's model.json; raises BundleError naming the problem."""
    path = Path(path)
    meta_path = path / META_NAME
    if not path.is_dir():
        raise BundleError(path, "not a model bundle directory")
    if not meta_path.is_file():
        raise BundleError(path, f"no {META_NAME} (not a model bundle, or training did not finish)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(meta_path, f"not valid JSON: {exc}") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(meta_path, f"format is {meta.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    if meta.get("format_version") != BUNDLE_VERSION:
        raise BundleError(meta_path, f"format version {meta.get('format_version')!r}; this release reads "
                                     f"version {BUNDLE_VERSION}")
    for target, head in meta.get("heads", {}).items():
        if not (path / head["weights"]).is_file():
            raise BundleError(path / head["weights"], f"weights of the {target!r} head are missing")
    return meta


def write_meta(path: os.PathLike | str, meta: dict) -> Path:
    """Write model.json atomically (temporary name, then rename)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, **meta, "package_version": __version__}
    tmp = path / f".{META_NAME}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path / META_NAME)
    return path / META_NAME


def load_bundle(spec: str | os.PathLike | None = "default") -> Bundle:
    """Open a bundle: ``"default"`` (or None) for the shipped model, else a bundle directory."""
    path = DEFAULT_BUNDLE if spec in (None, "default") else Path(spec)
    meta = read_meta(path)
    return Bundle(path=path, meta=meta, sha256=bundle_sha256(path))


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


def predict(bundle: Bundle, traj, batch_size: int = 1024, targets: tuple[str, ...] | None = None) -> dict:
    """Per-point predictions for every trajectory of ``traj`` (a store.Trajectories).

    Returns a dict of arrays aligned with ``traj.points``: ``pred_alpha`` (float32),
    ``pred_K`` (float32, in the trajectory's length units squared per frame**alpha),
    ``pred_state`` (int8: 0 immobile, 1 confined, 2 free, 3 directed), its probabilities
    :data:`STATE_PROB_COLUMNS` (float32, one column per state), and per track
    ``fallback`` (bool): tracks shorter than the bundle's ``min_points`` do not go through
    the networks and get alpha 1, state 2 (free) and K from their mean squared step
    (:func:`anomalousnet.features.fallback_values`). Works for any track length >= 1.
    Tracks longer than the window are predicted in overlapping windows and stitched.
    """
    cfg = bundle.features
    targets = targets or tuple(t for t in ("alpha", "K", "state") if t in bundle.targets)
    x = np.asarray(traj.points["x"], np.float64)
    y = np.asarray(traj.points["y"], np.float64)
    offsets = np.asarray(traj.offsets, np.int64)
    lengths = np.diff(offsets)
    fallback = lengths < cfg.min_points
    windows = ft.make_windows(x, y, offsets, np.flatnonzero(~fallback), cfg)
    n = int(offsets[-1])
    out = {}
    for target in targets:
        raw = _predict_windows(bundle.model(target), windows.inputs, batch_size)
        if target == "K":
            raw = ft.denormalise_K(raw.astype(np.float64), windows.scale[:, None])
        sums, weights = ft.stitch(raw, windows, offsets, cfg)
        covered = weights > 0
        if target == "state":
            values = np.full(n, 2, np.int8)
            values[covered] = np.argmax(sums[covered], axis=-1).astype(np.int8)
            probs = np.zeros((n, len(STATE_PROB_COLUMNS)), np.float32)
            probs[:, 2] = 1.0  # uncovered points (fallback tracks) are free
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
