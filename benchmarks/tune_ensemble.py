"""The ensembles' noise model (anomalousnet.ensemble.EnsembleNoise) on simulated AnDi-2 data:
W1 distances of alpha and K, per diffusion model, with the measured variances (factor 0)
and with pooling's error models (ALPHA_ERROR, LOGK_ERROR) times a factor taken off them, K's
variance kept at least ``k_floor`` of the measured one.

Runs ``andi run``'s track-2 path once (the model method: networks, segments, field-of-view
stage, pooling, per experiment), keeps every experiment's labels, then builds each
experiment's ensemble with every noise setting and scores it with the official W1
(``andi_datasets.utils_challenge``) against the reference, as ``andi score`` does.

    .venv/bin/python benchmarks/tune_ensemble.py --seed 7 --data build/tune-ensemble
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalousnet import ensemble as ens  # noqa: E402
from anomalousnet.andi import benchmark as bm  # noqa: E402
from anomalousnet.andi import methods, scoring, submission  # noqa: E402
from anomalousnet.io import andi_files as af  # noqa: E402
from anomalousnet.segments.pooling import ALPHA_ERROR, LOGK_ERROR  # noqa: E402


# (alpha factor, log10 K factor, k_floor); factors on pooling's error models, 0: none
SETTINGS = [(fa, 1.0, 0.25) for fa in (0.0, 0.5, 0.75, 1.0)] + \
    [(0.75, fk, floor) for floor in (0.0, 0.25, 0.5) for fk in (0.0, 0.5, 0.75, 1.0)]


def noise_model(fa: float, fk: float, floor: float) -> ens.EnsembleNoise:
    scaled = [(f * e[0], f * e[1]) if f else None for f, e in ((fa, ALPHA_ERROR), (fk, LOGK_ERROR))]
    return ens.EnsembleNoise(alpha=scaled[0], logk=scaled[1], k_floor=floor)


def experiment_labels(root: Path, model: str) -> dict[int, list]:
    """Every track-2 experiment's labels from ``andi run``'s path: its ensemble step is
    wrapped to keep the labels it summarises, paired with the experiment whose file it writes
    next."""
    captured: dict[int, list] = {}
    pending: list = []
    summarise, write = submission.ensemble_from_labels, submission.write_ensemble

    def keep(labels, *args, **kwargs):
        pending.append(list(labels))
        return summarise(pending[-1], *args, **kwargs)

    def capture(path, label):
        captured[int(Path(path).parent.name.split("_")[1])] = pending.pop()
        return write(path, label)

    submission.ensemble_from_labels, submission.write_ensemble = keep, capture
    try:
        with tempfile.TemporaryDirectory() as sub:
            submission.run_public(root / "public", sub, methods.make_method("model", model), tracks=(2,),
                                  progress=False)
    finally:
        submission.ensemble_from_labels, submission.write_ensemble = summarise, write
    return captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seed", type=int, default=7, help="dataset seed (keep it apart from the benchmark's 0)")
    parser.add_argument("--fovs", type=int, default=6, help="FOVs per experiment")
    parser.add_argument("--data", default="build/tune-ensemble", help="folder of the simulated datasets (reused)")
    parser.add_argument("--cache", type=Path, help="pickle of the experiments' labels (reused when present)")
    args = parser.parse_args()

    roots = bm.make_datasets(args.data, bm.BenchmarkOptions(quick=True, seed=args.seed, fovs=args.fovs),
                             progress=False)
    root = Path(roots["andi"])
    if args.cache and args.cache.exists():
        labels = pickle.loads(args.cache.read_bytes())
    else:
        labels = experiment_labels(root, args.model)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(labels))
    ref = {exp: af.read_ensemble(root / "ref" / "track_2" / f"exp_{exp}" / af.ENSEMBLE_NAME) for exp in labels}
    print(f"seed {args.seed}: {len(labels)} experiments, {sum(map(len, labels.values()))} trajectories")
    print(f"{'alpha x, K x, floor':<22}{'model':<16}{'W1 alpha':>10}{'W1 K':>10}")
    for setting in SETTINGS:
        noise, name = noise_model(*setting), ", ".join(f"{v:g}" for v in setting)
        by_model = defaultdict(list)
        for exp, exp_labels in sorted(labels.items()):
            m = scoring.score_ensemble(ref[exp], ens.ensemble_from_labels(exp_labels, noise=noise))
            by_model[ref[exp].model].append((m["ens_alpha_w1"], m["ens_K_w1"]))
            by_model["all"].append((m["ens_alpha_w1"], m["ens_K_w1"]))
        for model, values in by_model.items():
            a, k = np.mean(values, axis=0)
            print(f"{name:<22}{model:<16}{a:>10.4f}{k:>10.4f}", flush=True)


if __name__ == "__main__":
    main()
