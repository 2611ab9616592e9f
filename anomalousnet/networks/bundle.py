"""Model bundles: a directory of weights + ``model.json``; the one reader and writer of that file.

A bundle is a directory::

    model.json            format, package version, input (window length, overlap, scaling),
                          per head: preset, filters, weights file, training data and command,
                          validation metrics
    alpha.weights.h5      Keras weights of each head (rebuilt from model.json, then loaded)
    K.weights.h5
    state.weights.h5

``load_bundle("default")`` (or no spec) opens the model shipped in the package
(anomalousnet/models/default). The networks use Keras layers and ``keras.ops`` only, so a
bundle predicts under any Keras backend (TensorFlow, JAX, PyTorch).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from anomalousnet import __version__
from anomalousnet import features as ft
from anomalousnet.core.errors import InputError
from anomalousnet.io import atomic

BUNDLE_FORMAT = "anomalousnet-model"
BUNDLE_VERSION = 1
META_NAME = "model.json"
DEFAULT_BUNDLE = Path(__file__).parent.parent / "models" / "default"


class BundleError(InputError):
    """A model bundle is missing, incomplete or of another format; names the path."""


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
            from anomalousnet.networks import model as mdl

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
    return atomic.write_text(path / META_NAME, json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n")


def load_bundle(spec: str | os.PathLike | None = "default") -> Bundle:
    """Open a bundle: ``"default"`` (or None) for the shipped model, else a bundle directory."""
    path = DEFAULT_BUNDLE if spec in (None, "default") else Path(spec)
    meta = read_meta(path)
    return Bundle(path=path, meta=meta, sha256=bundle_sha256(path))
