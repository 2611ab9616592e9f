"""Choose the segment stage's settings (change points, segment values, state) on simulated
AnDi-2 data, with the official metrics; prints figures, asserts nothing.

    .venv/bin/python benchmarks/tune_segments.py [--model default] [--seed 100] [--fovs 6]
        [--grid '{"penalty": [16, 24, 32], "state_prior": [[1, 1, 1, 1], [1, 1, 2, 1]]}'] [--ensemble]

Simulates (or reuses, under --data) the benchmark's two datasets with a seed of its own (the
challenge-default experiments and the directed-motion set; `anomalousnet.andi.benchmark.make_datasets`),
predicts every track-2 trajectory once with the model, then segments them with every
combination of the grid's ``SegmentOptions`` fields (the others at their defaults) and scores
each with ``andi_datasets.utils_challenge`` as `andi score` does: change-point RMSE and
Jaccard, alpha MAE, K MSLE, state F1, per-state frame recall, and (--ensemble) the ensemble
W1 distances. The classical baseline is scored on the same data for reference.
The shipped defaults (``benchmarks/TUNING.md``) were chosen with this script.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalousnet.andi import baselines, scoring  # noqa: E402
from anomalousnet.andi import benchmark as bm  # noqa: E402
from anomalousnet.core.names import STATE_NAMES  # noqa: E402
from anomalousnet.ensemble import ensemble_from_labels  # noqa: E402
from anomalousnet.io import andi_files as af  # noqa: E402
from anomalousnet.networks.bundle import load_bundle  # noqa: E402
from anomalousnet.networks.predict import predict, with_predictions  # noqa: E402
from anomalousnet.segments import segmentation as cp  # noqa: E402

METRICS = ("cp_rmse", "cp_jaccard", "alpha_mae", "K_msle", "state_f1")


def predicted_fovs(root: Path, bundle) -> list[dict]:
    """Every track-2 FOV of a dataset with the model's predictions and its reference labels."""
    fovs = []
    for fov in af.find_public(root / "public", [2]):
        traj = af.read_andi_csv(fov.trajs)
        ref_dir = root / "ref" / "track_2" / f"exp_{fov.exp}"
        labels, _ = af.read_labels(ref_dir / f"traj_labs_fov_{fov.fov}.txt")
        fovs.append({"exp": fov.exp, "traj": with_predictions(traj, predict(bundle, traj)),
                     "ref": {l.idx: l for l in labels}, "ensemble": af.read_ensemble(ref_dir / af.ENSEMBLE_NAME)})
    return fovs


def score(fovs: list[dict], method, ensemble: bool) -> dict:
    """Official metrics of ``method(Trajectories) -> labels`` over the FOVs, weighted over
    experiments as the official scorer; plus frame recall per true state."""
    by_exp: dict[int, list] = {}
    for f in fovs:
        for label in method(f["traj"]):
            by_exp.setdefault(f["exp"], []).append((f["ref"][label.idx], label))
    per_exp, frames = [], np.zeros((4, 2))
    ens = {f["exp"]: f["ensemble"] for f in fovs}
    for exp, pairs in sorted(by_exp.items()):
        m = scoring.score_single(pairs)
        if ensemble:
            m.update(scoring.score_ensemble(ens[exp], ensemble_from_labels([p[1] for p in pairs])))
        per_exp.append((m, len(pairs)))
        for ref, sub in pairs:
            truth, guess = ref.per_frame()["state"], sub.per_frame()["state"]
            for s in range(4):
                frames[s] += ((truth == s).sum(), ((truth == s) & (guess == s)).sum())
    out = {}
    for name in METRICS:
        vals = [(m[name], n) for m, n in per_exp if m.get(name) is not None]
        out[name] = float(np.average([v for v, _ in vals], weights=[n for _, n in vals])) if vals else None
    if ensemble:
        for name in ("ens_alpha_w1", "ens_K_w1"):
            out[name] = float(np.mean([m[name] for m, _ in per_exp]))
    for s, name in enumerate(STATE_NAMES):
        out[f"recall_{name}"] = float(frames[s, 1] / frames[s, 0]) if frames[s, 0] else None
    return out


def model_method(options: cp.SegmentOptions):
    return lambda traj: af.labels_from_segments(cp.segment_trajectories(traj, options))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seed", type=int, default=100, help="dataset seed (keep it apart from the benchmark's 0)")
    parser.add_argument("--fovs", type=int, default=6, help="FOVs per experiment")
    parser.add_argument("--data", default="build/tune-segments", help="folder of the simulated datasets (reused)")
    parser.add_argument("--grid", default="{}", help="JSON: SegmentOptions field -> list of values")
    parser.add_argument("--ensemble", action="store_true", help="also the ensemble W1 distances (slower)")
    args = parser.parse_args()

    grid = json.loads(args.grid)
    fields = {f.name for f in dataclasses.fields(cp.SegmentOptions)}
    if set(grid) - fields:
        parser.error(f"unknown SegmentOptions field(s) {sorted(set(grid) - fields)}; choose from {sorted(fields)}")
    roots = bm.make_datasets(args.data, bm.BenchmarkOptions(quick=True, seed=args.seed, fovs=args.fovs),
                             progress=False)
    bundle = load_bundle(args.model)
    print(f"model {bundle.path} ({bundle.sha256[:12]}); datasets {', '.join(str(r) for r in roots.values())}")
    data = {name: predicted_fovs(Path(root), bundle) for name, root in roots.items()}
    for name, fovs in data.items():
        print(f"{name}: {sum(f['traj'].n_tracks for f in fovs)} trajectories in {len(fovs)} FOVs")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    rows = [("classical", lambda traj: baselines.classical(traj))]
    rows += [(json.dumps(c) if c else "defaults", model_method(dataclasses.replace(
        cp.SegmentOptions(), **{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()}))) for c in combos]
    columns = [*METRICS, *(("ens_alpha_w1", "ens_K_w1") if args.ensemble else ()), "recall_immobile",
               "recall_confined", "recall_free"]
    for name, fovs in data.items():
        cols = columns if name == "andi" else ["cp_rmse", "cp_jaccard", "alpha_mae", "state_f1", "recall_free",
                                               "recall_directed"]
        print(f"\n{name}\n{'settings':<44}" + "".join(f"{c:>16}" for c in cols))
        for label, method in rows:
            m = score(fovs, method, args.ensemble and name == "andi")
            print(f"{label:<44}" + "".join(f"{m[c]:>16.4f}" if m.get(c) is not None else f"{'-':>16}" for c in cols),
                  flush=True)


if __name__ == "__main__":
    main()
