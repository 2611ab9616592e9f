"""Grid over ``SegmentOptions`` and ``ZoneOptions`` on the whole track-2 path of ``andi run``
(networks, segments, field-of-view stage, pooling per experiment), scored with the official metrics
(``andi_datasets.utils_challenge``, as ``andi score``) on the benchmark's two datasets of a
tuning seed (the challenge-default experiments and the directed set; simulated or reused
under ``--out``/data, as ``anomalousnet-batch benchmark --quick``). The networks run once per
FOV; every setting reruns the rest. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/tune_pipeline.py --seed 7 --out build/tune-s7 \\
        --grid '{"penalty": [12, 16, 24], "escape": [0.1, 0.15]}'
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalousnet.andi import benchmark as bm  # noqa: E402
from anomalousnet.andi import methods, scoring  # noqa: E402
from anomalousnet.andi.submission import run_public  # noqa: E402
from anomalousnet.networks import predict as networks_predict  # noqa: E402
from anomalousnet.segments.segmentation import SegmentOptions  # noqa: E402
from anomalousnet.segments.zones import ZoneOptions  # noqa: E402

COLUMNS = ("cp_jaccard", "cp_rmse", "alpha_mae", "K_msle", "state_f1", "ens_alpha_w1", "ens_K_w1")


def cached_predict():
    """``networks.predict.predict`` remembering its result per input (the trajectories' bytes),
    installed in its module so that ``methods.model_method`` picks it up."""
    original, memo = networks_predict.predict, {}

    def predict(bundle, traj, **kwargs):
        key = hashlib.sha1(b"".join(traj.points[c].tobytes() for c in ("x", "y", "frame"))).hexdigest()
        if key not in memo:
            memo[key] = original(bundle, traj, **kwargs)
        return memo[key]

    networks_predict.predict = predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True, help="tuning seed (never the benchmark's 0)")
    parser.add_argument("--out", type=Path, required=True, help="folder whose data/ holds (or gets) the datasets")
    parser.add_argument("--fovs", type=int, default=6)
    parser.add_argument("--model", default="default")
    parser.add_argument("--grid", default="{}", help="JSON: SegmentOptions or ZoneOptions field -> list of values")
    args = parser.parse_args()
    grid = json.loads(args.grid)
    segment_fields = {f.name for f in dataclasses.fields(SegmentOptions)}
    zone_fields = {f.name for f in dataclasses.fields(ZoneOptions)}
    if set(grid) & segment_fields & zone_fields:
        parser.error(f"field(s) {sorted(set(grid) & segment_fields & zone_fields)} of both SegmentOptions and ZoneOptions")
    if set(grid) - segment_fields - zone_fields:
        parser.error(f"unknown SegmentOptions or ZoneOptions field(s) {sorted(set(grid) - segment_fields - zone_fields)}")
    roots = bm.make_datasets(args.out / "data", bm.BenchmarkOptions(quick=True, seed=args.seed, fovs=args.fovs),
                             progress=False)
    cached_predict()
    print(f"{'dataset':<9}{'setting':<44}" + "".join(f"{c:>13}" for c in COLUMNS) + "  per-experiment CP Jaccard | F1 | alpha MAE | K MSLE | W1 K")
    for values in itertools.product(*grid.values()):
        setting = {k: tuple(v) if isinstance(v, list) else v for k, v in zip(grid, values)}
        method = methods.model_method(
            args.model, SegmentOptions(**{k: v for k, v in setting.items() if k in segment_fields}),
            zones=ZoneOptions(**{k: v for k, v in setting.items() if k in zone_fields}))
        for name, root in roots.items():
            with tempfile.TemporaryDirectory() as sub:
                run_public(root / "public", Path(sub), method, [2], progress=False)
                report = scoring.score(sub, root / "ref", [2], ensemble=name == "andi")
            overall = report.overall(2)
            metrics = {"": "cp_jaccard", "F1 ": "state_f1", "alpha ": "alpha_mae", "K ": "K_msle"}
            if name == "andi":
                metrics["W1 K "] = "ens_K_w1"
            per_exp = " | ".join(label + " ".join(f"{e.metrics.get(m, float('nan')):.3f}" for e in report.experiments)
                                 for label, m in metrics.items())
            print(f"{name:<9}{json.dumps(setting) or '{}':<44}" +
                  "".join(f"{overall[c]:>13.4f}" if overall.get(c) is not None else f"{'-':>13}" for c in COLUMNS) +
                  f"  {per_exp}", flush=True)


if __name__ == "__main__":
    main()
