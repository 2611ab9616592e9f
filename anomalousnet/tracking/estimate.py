"""Tracking parameters estimated from a video itself: spot size, minimum mass, search range.

Used by :func:`anomalousnet.tracking.video_tracking.track_video` for every parameter the
user did not give; the values used are recorded in the shard.
"""
from __future__ import annotations

import math

import numpy as np


def estimate_spot_sigma(frames: np.ndarray) -> float:
    """PSF width (Gaussian sigma, px) from the profiles of bright spots in ``frames`` (n, Y, X).

    A Gaussian spot's log-intensity is a parabola of curvature -1/sigma^2 along each axis,
    wherever its centre lies between pixels. A weighted parabola fit over +-2 px (weights =
    intensity, as for log-transformed shot noise) per bright peak and axis, then the median
    curvature, is robust to noise, sub-pixel offsets and occasional crowding.
    """
    from scipy import ndimage

    offsets = np.arange(-2, 3)
    curvatures = []
    for image in frames:  # one frame at a time in float: the sample of a huge stack stays small
        image = np.asarray(image, dtype=float)
        background = np.median(image)
        noise = 1.4826 * np.median(np.abs(image - background)) or 1.0
        smooth = ndimage.uniform_filter(image, 3)
        peaks = (smooth == ndimage.maximum_filter(smooth, 7)) & (image > background + 5 * noise)
        peaks[:3], peaks[-3:], peaks[:, :3], peaks[:, -3:] = False, False, False, False
        for r, c in zip(*np.nonzero(peaks)):
            # The brightest pixel near the smoothed maximum is the spot's peak pixel.
            dr, dc = np.unravel_index(np.argmax(image[r - 1:r + 2, c - 1:c + 2]), (3, 3))
            r, c = r + dr - 1, c + dc - 1
            if not (2 <= r < image.shape[0] - 2 and 2 <= c < image.shape[1] - 2):
                continue
            for profile in (image[r - 2:r + 3, c], image[r, c - 2:c + 3]):
                values = profile - background
                keep = values > max(2 * noise, 0.05 * values[2])
                if keep.sum() < 3 or not keep[1:4].all():
                    continue
                a2 = np.polyfit(offsets[keep], np.log(values[keep]), 2, w=values[keep])[0]
                curvatures.append(2 * a2)
    curvatures = np.asarray(curvatures)
    if len(curvatures) < 3 or np.median(curvatures) >= 0:
        raise ValueError("too few bright spots to estimate the spot size; give the diameter explicitly")
    return float(np.sqrt(-1 / np.median(curvatures)))


def diameter_for_sigma(sigma: float) -> int:
    """trackpy diameter for a spot of Gaussian ``sigma``: odd, radius ~1.5 sigma, at least 5 px.

    Measured on synthetic spots: a smaller mask biases positions towards pixel centres
    for wide spots, a larger one merges neighbours (recall drops 4 % per 2 px).
    """
    return 2 * max(2, int(math.ceil(1.5 * sigma - 1e-9))) + 1


def estimate_minmass(frames: np.ndarray, diameter: int, percentile: float = 64.0, seed: int = 0,
                     factor: float = 1.2) -> float:
    """Smallest mass that noise alone does not reach: ``factor`` times the largest feature mass
    trackpy finds in pure-noise images with the background level and noise of ``frames``.

    The noise is measured robustly (median absolute deviation) on the frames themselves, so
    the threshold follows each video's signal-to-noise ratio without assuming how many
    particles there are.
    """
    from anomalousnet.tracking.localisation import locate_frames

    frames = np.asarray(frames)
    dtype = frames.dtype
    rng = np.random.default_rng(seed)
    # Per frame, in float one frame at a time (a float copy of a huge sample would cost GBs).
    stats = []
    for image in frames:
        image = np.asarray(image, dtype=float)
        level = float(np.median(image))
        stats.append((level, 1.4826 * float(np.median(np.abs(image - level))), float(image.std())))
    background, noise, spread = (float(np.median(column)) for column in zip(*stats))
    if noise == 0:
        noise = spread or 1.0
    shape = tuple(min(s, 256) for s in frames.shape[1:])
    n = min(48, max(4, int(math.ceil(frames.size / np.prod(shape)))))  # about as many pixels as the sample
    images = background + np.stack([rng.normal(0, noise, shape) for _ in range(n)])
    if dtype.kind in "iu":  # same dtype as the video: trackpy's default threshold depends on it
        info = np.iinfo(dtype)
        images = np.clip(np.round(images), info.min, info.max).astype(dtype)
    masses = np.concatenate(locate_frames(images, diameter, 0, diameter + 1, percentile))[:, 2]  # trackpy.locate's
    return factor * float(masses.max()) if len(masses) else 0.0


def estimate_search_range(features, diameter: int, floor: float = 2.0, ceiling: float = 20.0,
                          quantile: float = 99.0, factor: float = 1.8) -> float:
    """Largest displacement to link between frames, px, from features in consecutive frames.

    Steps are taken between mutual nearest neighbours of consecutive frames (a feature whose
    particle vanished, or blinked, has a nearest neighbour that prefers another feature, so
    it is left out). ``factor`` times the ``quantile`` of those distances leaves room for the
    heavy tails of super-diffusive and directed motion and for slow/fast mixtures, where a
    median would fit the slow majority only. Bounded by ``floor``, half the median distance
    between neighbouring particles (beyond it links become ambiguous) and ``ceiling``.
    On AnDi-2 videos (6 FOVs, 5 models) 1.8 x the 99th percentile recovered the most VIPs.
    """
    from scipy.spatial import cKDTree

    steps, spacing = [], []
    from anomalousnet.tracking.localisation import rows_by_frame

    xy = features[["x", "y"]].to_numpy()
    by_frame = {f: xy[rows] for f, rows in rows_by_frame(features["frame"].to_numpy()).items()}
    for f, here in by_frame.items():
        there = by_frame.get(f + 1)
        if there is None or len(here) < 2 or len(there) < 1:
            continue
        spacing.extend(cKDTree(here).query(here, k=2)[0][:, 1])
        forward, k = cKDTree(there).query(here)
        back = cKDTree(here).query(there)[1]
        steps.extend(forward[back[k] == np.arange(len(here))])
    if not steps:
        return max(floor, float(diameter))
    upper = max(floor, min(0.5 * float(np.median(spacing)), ceiling))
    steps = np.asarray(steps)
    steps = steps[steps < upper]
    if len(steps) == 0:
        return upper
    return float(np.clip(factor * np.percentile(steps, quantile), floor, upper))
