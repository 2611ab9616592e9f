"""Grid over the pooling of segment values (anomalousnet.segments.pooling; SegmentOptions'
pool_values, alpha_error, logk_error, split_decades, min_segments) on simulated AnDi-2 data:
per diffusion model, alpha MAE per segment and per frame and K MSLE per segment, before and
after pooling, on the segments of pure ground truth (>= 90 % of their frames one alpha).

The networks, the segment stage and the field-of-view stage (verdict pooled per experiment)
run once per FOV (predictions kept in ``--cache``, the same file as tune_zones.py's); each
setting then only reruns the pooling, per experiment (as ``andi run``) or with ``--per-fov``.

    .venv/bin/python benchmarks/tune_pooling.py --data tune-s7 --cache tune-s7.pkl \\
        --grid '{"alpha_error": [[0.001, 0.5], [0.001, 0.96]]}'
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from tune_zones import cached_fovs, grid_parser  # noqa: E402


def segment_rows(fovs: list[dict], data: Path) -> pd.DataFrame:
    """One row per segment after the field-of-view stage: experiment, FOV, model, length,
    called state, alpha, K, and the truth (median alpha and D over its frames, and its share
    of frames at that alpha)."""
    from anomalousnet.segments.zones import ZoneOptions, zone_stage

    pooled: dict[int, float] = {}
    for f in fovs:
        pooled[f["exp"]] = pooled.get(f["exp"], 0.0) + zone_stage(f["traj"], f["segments"], ZoneOptions()).log_odds
    rows = []
    for i, f in enumerate(fovs):
        traj = f["traj"]
        segs = zone_stage(traj, f["segments"], ZoneOptions(), pooled[f["exp"]]).segments
        if "truth_alpha" not in f:  # caches of tune_zones.py hold the true state only
            ref = pd.read_csv(data / "ref" / "track_2" / f"exp_{f['exp']}" / f"trajs_fov_{f['fov']}.csv")
            ref = ref.sort_values(["traj_idx", "frame"])
            f["truth_alpha"], f["truth_K"] = ref["alpha"].to_numpy(), ref["D"].to_numpy()
        row_of = {p: r for r, p in enumerate(traj.tracks["particle"].tolist())}
        for j in range(len(segs["particle"])):
            r = row_of[int(segs["particle"][j])]
            a, b = traj.offsets[r] + segs["start"][j], traj.offsets[r] + segs["end"][j]
            true_alpha = float(np.median(f["truth_alpha"][a:b]))
            rows.append({"fov_key": i, "exp": f["exp"], "model": f["model"], "particle": int(segs["particle"][j]),
                         "n": int(b - a), "state": int(segs["state"][j]), "alpha": float(segs["alpha"][j]),
                         "K": float(segs["K"][j]), "true_alpha": true_alpha,
                         "true_K": float(np.median(f["truth_K"][a:b])),
                         "true_state": int(np.bincount(f["truth"][a:b]).argmax()),
                         "pure": float(np.mean(f["truth_alpha"][a:b] == true_alpha))})
    return pd.DataFrame(rows)


def score(rows: pd.DataFrame, options, per_fov: bool) -> dict[str, tuple[float, ...]]:
    """Per model (and "all"): alpha MAE per segment before/after, per frame before/after,
    K MSLE before/after, over mobile segments of pure truth."""
    from anomalousnet.segments.pooling import pool_values

    segments = {"start": np.zeros(len(rows), np.int64), "end": rows["n"].to_numpy(),
                "alpha": rows["alpha"].to_numpy(np.float32), "K": rows["K"].to_numpy(np.float32),
                "state": rows["state"].to_numpy(np.int8), "particle": rows["particle"].to_numpy()}
    pooled = pool_values(segments, options, rows["fov_key" if per_fov else "exp"].to_numpy())
    rows = rows.assign(pooled_alpha=pooled["alpha"], pooled_K=pooled["K"])
    rows = rows[(rows["pure"] >= 0.9) & (rows["true_state"] != 0)]
    out = {}
    for name, g in [*rows.groupby("model"), ("all", rows)]:
        e0, e1 = (g["alpha"] - g["true_alpha"]).abs(), (g["pooled_alpha"] - g["true_alpha"]).abs()
        k0 = (np.log1p(g["K"]) - np.log1p(g["true_K"])) ** 2
        k1 = (np.log1p(g["pooled_K"]) - np.log1p(g["true_K"])) ** 2
        out[name] = (e0.mean(), e1.mean(), np.average(e0, weights=g["n"]), np.average(e1, weights=g["n"]),
                     k0.mean(), k1.mean())
    return out


def main() -> None:
    from anomalousnet.segments.segmentation import SegmentOptions

    parser = grid_parser(__doc__, "SegmentOptions pooling field")
    parser.add_argument("--per-fov", action="store_true", help="pool per FOV (as infer), not per experiment")
    args = parser.parse_args()
    fovs = cached_fovs(args.data, args.cache, args.model)
    rows = segment_rows(fovs, args.data)
    grid = json.loads(args.grid)
    for values in itertools.product(*grid.values()):
        setting = {k: tuple(v) if isinstance(v, list) else v for k, v in zip(grid, values)}
        print(f"== {setting or 'defaults'} (pooled per {'FOV' if args.per_fov else 'experiment'})")
        options = dataclasses.replace(SegmentOptions(), **setting)
        for name, (a0, a1, f0, f1, k0, k1) in score(rows, options, args.per_fov).items():
            print(f"  {name:15s} alpha MAE per segment {a0:.3f} -> {a1:.3f}, per frame {f0:.3f} -> {f1:.3f};"
                  f"  K MSLE {k0:.4f} -> {k1:.4f}")


if __name__ == "__main__":
    main()
