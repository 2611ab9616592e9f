"""What the main job writes beside its results store: ``segments.csv``, ``ensemble.csv``, ``zones.csv``, the
AnDi-2 ``ensemble/FOV.txt`` files and the report figures, streamed one shard at a time."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from anomalousnet import ensemble as ens
from anomalousnet.core.names import STATE_NAMES
from anomalousnet.io import store as st
from anomalousnet.io.andi_files import EnsembleLabel, write_ensemble
from anomalousnet.io.atomic import atomic_path
from anomalousnet.segments.zones import ZONE_COLUMNS

ENSEMBLE_DIR = "ensemble"
# per segment, how far to trust it (anomalousnet.segments.segmentation.with_quality; episode: a brief
# episode with its K level's values, anomalousnet.segments.episodes)
QUALITY_COLUMNS = ("track_length", "fallback", "filled_share", "in_ensemble", "episode")
# per segment, its values from itself alone (before pooling over the FOV; alpha, K when not pooled)
SINGLE_COLUMNS = {"alpha_single": "alpha", "K_single": "K"}
# ensemble.csv's columns in physical units (with --pixel-size and --frame-interval) -> from
PHYSICAL_ENSEMBLE = {"K_mean_um2_per_s_alpha": "K_mean", "K_var_um4_per_s2alpha": "K_var"}


def write_tables(shards: Iterable[Path], out_dir: Path, pixel_size_um: float | None = None,
                 frame_interval_s: float | None = None) -> tuple[Path, Path, Path]:
    """segments.csv, ensemble.csv, zones.csv and ensemble/NAME.txt (AnDi-2 layout) from
    results shards, streamed one shard at a time (memory stays flat); each file written
    atomically."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ENSEMBLE_DIR).mkdir(exist_ok=True)
    seg_path, ens_path, zones_path = out_dir / "segments.csv", out_dir / "ensemble.csv", out_dir / "zones.csv"
    seg_columns = ["source", "fov", "particle", "start", "end", "frame_start", "alpha", "K", "state", "state_name"]
    physical = pixel_size_um is not None and frame_interval_s is not None
    with atomic_path(seg_path) as seg_tmp, atomic_path(ens_path) as ens_tmp, atomic_path(zones_path) as zones_tmp, \
            open(seg_tmp, "w", newline="") as seg_file, open(ens_tmp, "w", newline="") as ens_file, \
            open(zones_tmp, "w", newline="") as zones_file:
        zones_file.write(",".join(["source", "fov", *ZONE_COLUMNS]) + "\n")
        seg_file.write(",".join(seg_columns + list(QUALITY_COLUMNS) + list(SINGLE_COLUMNS)
                                + (["K_um2_per_s_alpha"] if physical else []))
                       + "\n")
        ens_file.write(",".join(["source", "fov", *ens.ENSEMBLE_COLUMNS, "state_name"]
                                + (list(PHYSICAL_ENSEMBLE) if physical else [])) + "\n")
        for path in shards:
            if not path.exists():
                continue  # a failed FOV
            shard = st.read_shard(path)
            source = shard.attrs.get("source_path", str(path))
            seg = shard.tables.get("segments")
            if seg is None:
                continue
            df = pd.DataFrame({"source": source, "fov": path.stem, **{c: seg[c] for c in seg_columns[2:-1]}})
            df["state_name"] = state_names(df["state"])
            for c in QUALITY_COLUMNS:  # results of an earlier version lack them: left empty
                df[c] = seg[c] if c in seg else None
            for c, pooled in SINGLE_COLUMNS.items():
                df[c] = seg[c] if c in seg else seg[pooled]
            if physical:
                df["K_um2_per_s_alpha"] = physical_K(df["K"].to_numpy(), df["alpha"].to_numpy(), pixel_size_um,
                                                     frame_interval_s)
            df.to_csv(seg_file, header=False, index=False)
            zones = shard.tables.get("zones")
            if zones is not None:  # results of an earlier version have none
                pd.DataFrame({"source": source, "fov": path.stem, **{c: zones[c] for c in ZONE_COLUMNS}}).to_csv(
                    zones_file, header=False, index=False)
            e = shard.tables.get("ensemble")
            if e is not None:
                rows = pd.DataFrame({"source": source, "fov": path.stem, **{c: e[c] for c in ens.ENSEMBLE_COLUMNS}})
                rows["state_name"] = state_names(rows["state"])
                if physical:  # K's unit factor depends on each segment's alpha: averaged from the segments
                    physical_seg = {**seg, "K": df["K_um2_per_s_alpha"].to_numpy()}
                    if "K_single" in seg:  # the ensemble's values: each segment's own (before pooling)
                        physical_seg["K_single"] = physical_K(np.asarray(seg["K_single"]),
                                                              np.asarray(seg["alpha_single"]), pixel_size_um,
                                                              frame_interval_s)
                    e_phys = ens.ensemble_of(physical_seg)
                    for column, source_column in PHYSICAL_ENSEMBLE.items():
                        rows[column] = rows["state"].map(dict(zip(e_phys["state"].tolist(), e_phys[source_column])))
                rows.to_csv(ens_file, header=False, index=False)
                write_ensemble(out_dir / ENSEMBLE_DIR / f"{path.stem}.txt", EnsembleLabel("predicted", ens.andi_matrix(e)))
    return seg_path, ens_path, zones_path


def state_names(states) -> list[str]:
    return [STATE_NAMES[s] if 0 <= s < len(STATE_NAMES) else str(s) for s in states]


def physical_K(K_px: np.ndarray, alpha: np.ndarray, pixel_size_um: float, frame_interval_s: float) -> np.ndarray:
    """K from px^2/frame^alpha to um^2/s^alpha: MSD = K t^alpha, so K_phys = K px^2 / dt^alpha."""
    return np.asarray(K_px, np.float64) * pixel_size_um ** 2 / frame_interval_s ** np.asarray(alpha, np.float64)


def finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def write_figures(shards: Iterable[Path], fig_dir: Path, progress: bool = True) -> list[Path]:
    """One report PNG per results shard (kept when already there and newer than the shard)."""
    from tqdm import tqdm

    from anomalousnet.batch import report

    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    shards = [p for p in shards if p.exists()]
    for path in tqdm(shards, desc="report", unit="fov", disable=not progress):
        png = fig_dir / f"{path.stem}.png"
        if not (png.exists() and png.stat().st_mtime >= path.stat().st_mtime):
            report.fov_figure(st.read_shard(path), png)
        written.append(png)
    return written


def remove_stale_figures(shards: Iterable[Path], fig_dir: Path) -> list[Path]:
    """Delete report PNGs older than their results shard (drawn from results since replaced,
    e.g. before `segment --penalty`), so no figure contradicts the tables; returns them."""
    stale = []
    for path in shards:
        png = fig_dir / f"{path.stem}.png"
        if path.exists() and png.exists() and png.stat().st_mtime < path.stat().st_mtime:
            png.unlink()
            stale.append(png)
    return stale
