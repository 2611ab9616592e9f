"""Information bounds of two of issue 14's goals on a simulated AnDi-2 dataset: what no
estimator can beat, given the trajectories' information and the experiments' true spreads.

Each segment of the reference is fractional Brownian motion with localisation noise, so
the increments of one axis are Gaussian with the Toeplitz covariance
``2K * fGn_alpha(k) + sigma^2 * (2 if k == 0, -1 if |k| == 1)``. Its Fisher information
gives the Cramer-Rao sd of alpha from one segment of n frames (two axes; sigma known, K
unknown, or K known up to a Gaussian prior on log K).

* **Single-state alpha MAE**: per trajectory of a ``single_state`` experiment, that sd
  combined with the experiment's true alpha spread as a Gaussian prior (the most any pooling
  over the FOV can add; van Trees); the expected absolute error ``sqrt(2/pi) * sd``,
  averaged over trajectories as the official MAE.
* **Directed-set state F1**: andi_datasets labels a segment directed exactly when its true
  alpha >= 1.9, and the directed set draws the fast state's alpha around that line. Per fast
  segment (true alpha > 1.5) the Bayes-optimal directed/free call from an estimate with
  that sd, under the experiment's own alpha distribution as the prior, is right with a
  probability computed by Monte Carlo; slow frames are counted right and change points
  exact, so the frame accuracy (= micro F1) is an upper bound.

    .venv/bin/python benchmarks/bounds.py build/benchmark/data/andi-seed0-fovs6 \\
        build/benchmark/data/directed-seed0-fovs6
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalousnet.io.andi_files import read_labels  # noqa: E402
from anomalousnet.simulation.training_store import ALPHA_DIRECTED  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tune_zones import experiment_models  # noqa: E402


def increment_cov(alpha: float, log_scale: float, n: int, noise: float) -> np.ndarray:
    """Covariance of n increments of one axis: fGn of exponent alpha scaled by exp(log_scale)
    (= 2K) plus differenced white localisation noise of sd ``noise``."""
    k = np.arange(n, dtype=np.float64)
    g = 0.5 * (np.abs(k + 1) ** alpha - 2 * k ** alpha + np.abs(k - 1) ** alpha) * np.exp(log_scale)
    g[0] += 2 * noise ** 2
    if n > 1:
        g[1] -= noise ** 2
    return g[np.abs(np.subtract.outer(np.arange(n), np.arange(n)))]


def alpha_sd(alpha: float, K: float, frames: int, noise: float, logk_prior_sd: float | None = None) -> float:
    """Cramer-Rao sd of alpha from one segment (two axes), K unknown (with a Gaussian prior of
    sd ``logk_prior_sd`` on ln K when given)."""
    p, h = np.array([min(alpha, 1.999), np.log(2 * max(K, 1e-9))]), 1e-4
    cov = increment_cov(*p, frames - 1, noise)
    inv = np.linalg.inv(cov)
    d = [(increment_cov(*(p + h * e), frames - 1, noise) - increment_cov(*(p - h * e), frames - 1, noise)) / (2 * h)
         for e in np.eye(2)]
    fisher = np.array([[np.trace(inv @ d[i] @ inv @ d[j]) for j in range(2)] for i in range(2)])  # 2 axes x 1/2
    if logk_prior_sd:
        fisher[1, 1] += 1 / logk_prior_sd ** 2
    return float(np.sqrt(np.linalg.inv(fisher)[0, 0]))


def reference(root: Path, exp: int) -> tuple[np.ndarray, int]:
    """(K, alpha, state, frames) of every reference segment of at least 3 frames of one
    track-2 experiment, and its number of trajectories."""
    out, n_trajectories = [], 0
    for path in sorted((root / "ref" / "track_2" / f"exp_{exp}").glob("traj_labs_fov_*.txt")):
        for label in read_labels(path)[0]:
            n_trajectories += 1
            bounds = [0, *label.cps, label.T]
            out += [(k, a, s, b - e) for k, a, s, e, b in zip(label.K, label.alpha, label.state, bounds, bounds[1:])
                    if b - e >= 3]
    return np.array(out), n_trajectories


def dataset_noise(root: Path) -> float:
    manifest = root / "dataset.json"
    return float(json.loads(manifest.read_text()).get("noise", 0.12)) if manifest.exists() else 0.12


def single_state_bound(segs: np.ndarray, noise: float) -> dict:
    K, alpha, frames = segs[:, 0], segs[:, 1], segs[:, 3].astype(int)
    spread = float(alpha.std())
    sd = np.array([alpha_sd(a, k, n, noise) for a, k, n in zip(alpha, K, frames)])
    post = 1 / np.sqrt(1 / sd ** 2 + 1 / max(spread, 1e-6) ** 2)
    return {"trajectories": len(segs), "true_alpha_sd": spread, "median_frames": float(np.median(frames)),
            "median_crb_sd": float(np.median(sd)), "alpha_mae_bound": float(np.sqrt(2 / np.pi) * post.mean())}


def directed_bound(segs: np.ndarray, noise: float, logk_prior: bool, rng: np.random.Generator,
                   draws: int = 400) -> dict:
    K, alpha, frames = segs[:, 0], segs[:, 1], segs[:, 3]
    fast = alpha > 1.5
    prior = alpha[fast]  # the experiment's own distribution of the fast state's alpha
    prior_sd = float(np.log(K[fast]).std()) if logk_prior else None
    right = frames[~fast].sum()
    for a, k, n in zip(alpha[fast], K[fast], frames[fast]):
        sd = alpha_sd(a, k, int(n), noise, prior_sd)
        est = a + sd * rng.standard_normal(draws)
        weight = np.exp(-0.5 * ((est[:, None] - prior[None, :]) / sd) ** 2)
        p_directed = (weight * (prior >= ALPHA_DIRECTED)).sum(1) / weight.sum(1)
        right += n * np.mean((p_directed >= 0.5) == (a >= ALPHA_DIRECTED))
    return {"fast_segments": int(fast.sum()), "fast_frames": float(frames[fast].sum()),
            "directed_share_of_fast": float(np.mean(prior >= ALPHA_DIRECTED)), "f1_bound": float(right / frames.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="folders with ref/ (andi or directed set)")
    parser.add_argument("--seed", type=int, default=0, help="Monte Carlo seed")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for root in args.datasets:
        noise = dataset_noise(root)
        models = experiment_models(root)
        directed_set = not (root / "dataset.json").exists()
        overall = []
        for exp, model in sorted(models.items()):
            if not directed_set and model != "single_state":
                continue
            segs, n_trajectories = reference(root, exp)
            if directed_set:
                free = directed_bound(segs, noise, False, rng)
                prior = directed_bound(segs, noise, True, rng)
                overall.append((n_trajectories, free["f1_bound"], prior["f1_bound"]))
                print(f"{root.name} exp {exp} {model}: {free['fast_segments']} fast segments, "
                      f"{free['directed_share_of_fast']:.2f} of them labelled directed; state F1 bound "
                      f"{free['f1_bound']:.3f} (K unknown), {prior['f1_bound']:.3f} (K's true spread known)")
            else:
                b = single_state_bound(segs, noise)
                print(f"{root.name} exp {exp} single_state: {b['trajectories']} trajectories, true alpha sd "
                      f"{b['true_alpha_sd']:.3f}, median {b['median_frames']:.0f} frames, Cramer-Rao sd "
                      f"{b['median_crb_sd']:.3f} (median); alpha MAE bound {b['alpha_mae_bound']:.4f}")
        if overall:  # the official scorer weights experiments by their trajectories
            n, f1, f1_prior = np.array(overall).T
            print(f"{root.name}: state F1 bound {np.average(f1, weights=n):.3f} (K unknown), "
                  f"{np.average(f1_prior, weights=n):.3f} (K's true spread known)")


if __name__ == "__main__":
    main()
