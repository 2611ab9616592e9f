"""The alpha network run again on each segment alone (anomalousnet.segments.crops)."""
import dataclasses

import numpy as np
import pytest

from anomalousnet.core.names import DIRECTED, FREE, IMMOBILE
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.networks.bundle import load_bundle
from anomalousnet.networks.predict import predict
from anomalousnet.segments.crops import crop_alpha, crop_rows
from anomalousnet.segments.segmentation import SegmentOptions, refined_values


def fgn(n, alpha, rng):
    """n increments of fractional Brownian motion with exponent alpha (unit K, Cholesky)."""
    k = np.arange(n)
    h2 = alpha  # 2H
    gamma = 0.5 * (np.abs(k + 1) ** h2 - 2 * np.abs(k) ** h2 + np.abs(k - 1) ** h2)
    cov = gamma[np.abs(k[:, None] - k[None, :])]
    return np.linalg.cholesky(cov + 1e-12 * np.eye(n)) @ rng.normal(size=n) * np.sqrt(2.0)


def switching_track(rng, bounds=(0, 80, 120, 200), alphas=(1.8, 0.5, 1.8), noise=0.1):
    steps = [np.concatenate([fgn(b - a, al, rng) for a, b, al in zip(bounds[:-1], bounds[1:], alphas)])
             for _ in range(2)]
    x, y = (np.r_[0.0, np.cumsum(s)][:-1] + rng.normal(0, noise, bounds[-1]) for s in steps)
    return {"x": x, "y": y}


def segments_of(particles, bounds, state):
    k = len(bounds) - 1
    return {"particle": np.repeat(particles, k), "start": np.tile(bounds[:-1], len(particles)),
            "end": np.tile(bounds[1:], len(particles)), "alpha": np.ones(k * len(particles), np.float32),
            "K": np.ones(k * len(particles), np.float32), "state": np.full(k * len(particles), state, np.int8)}


def test_crop_rows_are_segments_of_tracks_with_change_points_long_enough_and_mobile():
    seg = {"particle": np.array([0, 1, 1, 1, 2, 2]), "start": np.array([0, 0, 50, 60, 0, 100]),
           "end": np.array([200, 50, 60, 200, 100, 200]), "state": np.array([FREE, FREE, FREE, FREE, IMMOBILE, FREE]),
           "alpha": np.array([1.0, 0.5, 1.5, 0.5, 0.0, 0.2])}
    assert crop_rows(seg, 20).tolist() == [1, 3, 5]  # whole track, 10 frames and immobile left out
    assert crop_rows(seg, 20, contrast=0.6).tolist() == [1, 3]  # alpha 0.2 next to 0.0: no blur to undo


def test_a_slow_segment_between_fast_ones_reads_its_own_alpha_after_cropping():
    rng = np.random.default_rng(4)
    bundle = load_bundle("default")
    traj = Trajectories.from_arrays([switching_track(rng) for _ in range(16)])
    pred = predict(bundle, traj, targets=("alpha",))["pred_alpha"]
    bounds = np.array([0, 80, 120, 200])
    segments = segments_of(np.arange(16), bounds, FREE)
    segments["alpha"] = np.tile(np.float32([1.4, 1.0, 1.4]), 16)  # the blurred whole-track values
    options = SegmentOptions()
    before = []
    for i in range(16):  # the values the segment stage gives from whole-track predictions
        a, b = traj.offsets[i] + 80, traj.offsets[i] + 120
        before.append(refined_values(np.median(pred[a:b]), 1.0, options, traj.points["x"][a:b], traj.points["y"][a:b])[0])
    cropped = crop_alpha(bundle, traj, segments, options)
    middle = cropped["alpha"][1::3]
    error_before, error_after = np.mean(np.abs(np.array(before) - 0.5)), np.mean(np.abs(middle - 0.5))
    # seed 4: 0.56 from the whole-track predictions, 0.14 after cropping
    assert error_after < 0.5 * error_before and error_after < 0.2, (error_before, error_after)
    # free or directed follows the new alpha
    assert np.array_equal(cropped["state"] == DIRECTED, cropped["alpha"] >= options.directed_alpha)
    assert np.all(cropped["state"][1::3] == FREE)
    off = crop_alpha(bundle, traj, segments, dataclasses.replace(options, crop_min_frames=None))
    assert np.array_equal(off["alpha"], segments["alpha"])


def test_whole_tracks_keep_their_values_and_bad_options_are_refused():
    rng = np.random.default_rng(5)
    traj = Trajectories.from_arrays([switching_track(rng) for _ in range(2)])
    segments = segments_of(np.arange(2), np.array([0, 200]), FREE)
    out = crop_alpha(load_bundle("default"), traj, segments, SegmentOptions())
    assert all(np.array_equal(out[c], segments[c]) for c in segments)
    with pytest.raises(ValueError, match="crop_min_frames"):
        SegmentOptions(crop_min_frames=2)
    with pytest.raises(ValueError, match="crop_contrast"):
        SegmentOptions(crop_contrast=-0.1)
