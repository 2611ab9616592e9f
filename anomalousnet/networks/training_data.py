"""Training data: the shards named on the command line, the validation split, each rank's windows."""
from __future__ import annotations

import glob
import zlib
from pathlib import Path

import numpy as np

from anomalousnet import features as ft
from anomalousnet.io import store as st


class TrainingError(ValueError):
    """Bad training input (data, options or checkpoint); the message names the path or value."""


def resolve_shards(patterns: list[str] | str) -> list[Path]:
    """Training shards named by store directories, shard files or glob patterns of either."""
    patterns = [patterns] if isinstance(patterns, (str, Path)) else list(patterns)
    shards: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern))) or ([str(pattern)] if Path(pattern).exists() else [])
        if not matches:
            raise TrainingError(f"{pattern}: no training store or shard matches")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                index = st.read_index(path)
                if index.kind != "training":
                    raise TrainingError(f"{path}: a {index.kind!r} store, not a training store")
                shards += [path / name for name in index.shard_names]
            elif path.name != st.INDEX_NAME:
                shards.append(path)
    return sorted(dict.fromkeys(shards))


def split_tracks(n_tracks: int, val_fraction: float, seed: int, shard_name: str) -> np.ndarray:
    """Boolean mask of the tracks held out for validation (fixed for a shard and seed)."""
    rng = np.random.default_rng([seed, zlib.crc32(shard_name.encode())])
    n_val = int(round(n_tracks * val_fraction))
    mask = np.zeros(n_tracks, bool)
    mask[rng.permutation(n_tracks)[:n_val]] = True
    return mask


def load_rank_data(shards: list[Path], ranks, config
                   ) -> tuple[ft.TrainingWindows, ft.TrainingWindows, list[Path]]:
    """This rank's training and validation windows from its own shards (shards[rank::size]).
    ``ranks``: a :class:`~anomalousnet.networks.training.Ranks`; ``config``: a
    :class:`~anomalousnet.networks.training.TrainConfig`."""
    if len(shards) < ranks.size:
        raise TrainingError(f"{len(shards)} training shard(s) for {ranks.size} ranks: each rank reads its own "
                            "shards, so simulate at least as many shards as ranks")
    mine = shards[ranks.rank::ranks.size]
    train_parts, val_parts = [], []
    for path in mine:
        shard = st.read_shard(path)
        if shard.attrs["kind"] != "training":
            raise TrainingError(f"{path}: kind {shard.attrs['kind']!r}, not a training shard "
                                "(needs per-frame alpha, K, state labels)")
        traj = shard.trajectories
        val = split_tracks(traj.n_tracks, config.val_fraction, config.seed, path.name)
        windows = ft.training_windows(traj, config.features)
        # A window belongs to the split of its track (windows are in track order).
        n_windows = _windows_per_track(traj, config.features)
        win_val = np.repeat(val, n_windows)
        train_parts.append(windows.subset(np.flatnonzero(~win_val)))
        val_parts.append(windows.subset(np.flatnonzero(win_val)))
    train = ft.TrainingWindows.concatenate(train_parts)
    val = ft.TrainingWindows.concatenate(val_parts)
    if config.max_windows and len(train) > config.max_windows:
        train = train.subset(np.arange(config.max_windows))
    if len(train) == 0:
        raise TrainingError(f"rank {ranks.rank}: no training windows in {[str(p) for p in mine]}")
    return train, val, mine


def _windows_per_track(traj, cfg: ft.FeatureConfig) -> np.ndarray:
    lengths = traj.lengths
    n = np.where(lengths <= cfg.length, 1, np.ceil((lengths - cfg.length) / cfg.stride).astype(np.int64) + 1)
    return np.where(lengths >= cfg.min_points, n, 0)


def data_provenance(shards: list[Path]) -> dict:
    stores = sorted({str(p.parent) for p in shards})
    commands = {}
    for s in stores:
        try:
            attrs = st.read_index(s).attrs
            commands[s] = {"command": attrs.get("command"), "parameters": attrs.get("parameters")}
        except st.StoreError:
            pass
    return {"stores": stores, "n_shards": len(shards), "store_commands": commands}
