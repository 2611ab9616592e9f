"""Grid over the field-of-view stage's settings (anomalousnet.segments.zones.ZoneOptions) on
simulated AnDi-2 data: per diffusion model, the share of frames whose state is right and the
frame recall of confined and free motion, before and after the stage.

The networks and the segment stage run once per FOV (kept in ``--cache``); each setting then
only reruns the stage. ``--pool`` pools the verdict's evidence over each experiment's FOVs,
as ``andi run`` does.

    .venv/bin/anomalousnet-batch simulate andi --out tune-s7 --seed 7 --experiments 15 --fovs 6 --workers 2
    .venv/bin/python benchmarks/tune_zones.py --data tune-s7 --cache tune-s7.pkl --pool \\
        --grid '{"zoned_odds": [0.25, 1, 2], "free_odds": [1, 3]}'
"""
from __future__ import annotations

import argparse
import itertools
import json
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd


def experiment_models(data: Path) -> dict[int, str]:
    """Experiment number -> diffusion model name, from ``dataset.json`` or (the benchmark's
    directed set has none) from the first line of each experiment's ``ens_labs_fov_0.txt``."""
    manifest = data / "dataset.json"
    if manifest.exists():
        return dict(enumerate(e["model"] for e in json.loads(manifest.read_text())["experiments"]))
    from anomalousnet.io.andi_files import read_ensemble

    return {int(labels.parent.name[4:]): read_ensemble(labels).model
            for labels in (data / "ref" / "track_2").glob("exp_*/ens_labs_fov_0.txt")}


def predicted_fovs(data: Path, model: str = "default") -> list[dict]:
    """Per FOV of track 2: experiment, FOV number, model name, trajectories with predictions,
    segments, and the true state per point."""
    from anomalousnet.io.andi_files import read_andi_csv
    from anomalousnet.networks.bundle import load_bundle
    from anomalousnet.networks.predict import predict, with_predictions
    from anomalousnet.segments.segmentation import segment_trajectories

    bundle = load_bundle(model)
    models = experiment_models(data)
    fovs = []
    for exp_dir in sorted((data / "public" / "track_2").glob("exp_*"), key=lambda p: int(p.name[4:])):
        exp = int(exp_dir.name[4:])
        for csv in sorted(exp_dir.glob("trajs_fov_*.csv")):
            traj = read_andi_csv(csv)
            predicted = with_predictions(traj, predict(bundle, traj))
            ref = pd.read_csv(data / "ref" / "track_2" / exp_dir.name / csv.name).sort_values(["traj_idx", "frame"])
            fovs.append({"exp": exp, "fov": int(csv.stem.split("_")[-1]), "model": models[exp], "traj": predicted,
                         "segments": segment_trajectories(predicted), "truth": ref["state"].to_numpy(int)})
    return fovs


def grid_parser(doc: str, fields: str) -> argparse.ArgumentParser:
    """The arguments of a tuning script: --data, --cache, --model and --grid (JSON: ``fields``
    -> list of values)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset of `simulate andi`")
    parser.add_argument("--cache", type=Path, help="keep the predictions here (reused when present)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--grid", default="{}", help=f"JSON: {fields} -> list of values")
    return parser


def cached_fovs(data: Path, cache: Path | None, model: str = "default") -> list[dict]:
    """:func:`predicted_fovs`, kept in ``cache`` (a pickle; reused when present)."""
    if cache and cache.exists():
        return pickle.loads(cache.read_bytes())
    fovs = predicted_fovs(data, model)
    if cache:
        cache.write_bytes(pickle.dumps(fovs))
    return fovs


def frame_states(traj, segments) -> np.ndarray:
    row = {p: i for i, p in enumerate(traj.tracks["particle"].tolist())}
    out = np.zeros(traj.n_points, int)
    for p, a, b, s in zip(segments["particle"].tolist(), segments["start"], segments["end"], segments["state"]):
        o = traj.offsets[row[p]]
        out[o + a:o + b] = s
    return out


def score(fovs: list[dict], options, pool: bool) -> dict[str, tuple[float, ...]]:
    """Per model: (right before, right after, confined recall after, free recall after)."""
    from anomalousnet.segments.zones import zone_stage

    pooled = defaultdict(float)
    if pool:
        for f in fovs:
            pooled[f["exp"]] += zone_stage(f["traj"], f["segments"], options).log_odds
    counts = defaultdict(lambda: np.zeros((2, 4, 4), int))
    for f in fovs:
        after = zone_stage(f["traj"], f["segments"], options, pooled[f["exp"]] if pool else None).segments
        for k, segs in enumerate((f["segments"], after)):
            np.add.at(counts[f["model"]][k], (f["truth"], frame_states(f["traj"], segs)), 1)
    out = {}
    for name, c in counts.items():
        recall = [c[1][s, s] / c[1][s].sum() if c[1][s].sum() else float("nan") for s in (1, 2)]
        out[name] = (np.trace(c[0]) / c[0].sum(), np.trace(c[1]) / c[1].sum(), *recall)
    return out


def main() -> None:
    from anomalousnet.segments.zones import ZoneOptions

    parser = grid_parser(__doc__, "ZoneOptions field")
    parser.add_argument("--pool", action="store_true", help="pool the verdict over each experiment's FOVs")
    args = parser.parse_args()
    fovs = cached_fovs(args.data, args.cache, args.model)
    grid = json.loads(args.grid)
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        print(f"== {setting or 'defaults'}{' (pooled per experiment)' if args.pool else ''}")
        for name, (before, after, confined, free) in sorted(score(fovs, ZoneOptions(**setting), args.pool).items()):
            print(f"  {name:15s} frames right {before:.3f} -> {after:.3f}   confined recall {confined:.2f}   "
                  f"free recall {free:.3f}")


if __name__ == "__main__":
    main()
