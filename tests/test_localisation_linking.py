"""Localisation by spot fits (known sub-pixel positions, precision estimate, K from MSD fits with
the measured precision) and LAP linking (a close pass keeps identities, a 3-frame blink is one
track), on small synthetic videos with known positions."""
import numpy as np
import pandas as pd
import pytest
import tifffile

from anomalousnet.io import store as st
from anomalousnet.segments.msd import msd_fit
from anomalousnet.simulation.synthetic_video import SyntheticVideo
from anomalousnet.tracking import linking
from anomalousnet.tracking import localisation as lo
from anomalousnet.tracking import metrics
from anomalousnet.tracking import video_tracking as vt


def write_video(path, video: SyntheticVideo, truth: pd.DataFrame) -> None:
    tifffile.imwrite(path, np.stack(list(video.frames(truth))), photometric="minisblack")


def table(positions: dict[int, np.ndarray], hidden: dict[int, set] | None = None) -> pd.DataFrame:
    """Truth table from {particle: (T, 2) array of x, y}; ``hidden``: frames a particle is invisible."""
    rows = []
    for p, xy in positions.items():
        for t, (x, y) in enumerate(xy):
            rows.append((p, t, x, y, t not in (hidden or {}).get(p, set())))
    return pd.DataFrame(rows, columns=["particle", "frame", "x", "y", "visible"])


def followed(tracked: pd.DataFrame, truth: pd.DataFrame, particle: int) -> float:
    """Coverage of a true particle by the track that starts nearest to it (its 'tagged' track)."""
    first = tracked[tracked["frame"] == 0]
    t0 = truth[(truth["particle"] == particle) & (truth["frame"] == 0)][["x", "y"]].to_numpy()[0]
    tagged = first["particle"].to_numpy()[np.argmin(np.hypot(first["x"] - t0[0], first["y"] - t0[1]))]
    return metrics.track_coverage(tracked, int(tagged), truth[truth["particle"] == particle], tol=1.0)


def background_particles(rng, n_frames: int, shape=(64, 96)) -> dict[int, np.ndarray]:
    """A few well separated Brownian particles far from the action (the estimators need spots)."""
    starts = [(10, 10), (85, 10), (10, 54), (85, 54)]
    return {10 + k: np.array(s) + np.cumsum(rng.normal(0, 0.3, (n_frames, 2)), axis=0) * 0.3
            for k, s in enumerate(starts)}


def test_fast_particle_passing_a_trapped_one_within_the_psf_keeps_identities(tmp_path):
    """A fast particle passes 1.2 px from a trapped one: one merged spot for 3 frames. The LAP
    linker keeps both (trackpy's link hands the fast particle's track to the trapped one:
    coverage 0.725 of the fast particle in this video)."""
    rng = np.random.default_rng(3)
    n = 40
    trapped = np.array([48.0, 32.0]) + rng.normal(0, 0.05, (n, 2))
    t = np.arange(n)
    fast = np.c_[48 + 1.5 * (t - 30), np.full(n, 33.2)] + rng.normal(0, 0.15, (n, 2))
    truth = table({0: trapped, 1: fast, **background_particles(rng, n)})
    video = SyntheticVideo(n_frames=n, shape=(64, 96), sigma_px=1.0, amplitude=300, seed=1)
    write_video(tmp_path / "v.tif", video, truth)
    shard = st.read_shard(vt.track_video(tmp_path / "v.tif", tmp_path / "v.h5", vt.TrackOptions(linker="lap")))
    df = shard.trajectories.to_dataframe()
    assert followed(df, truth, 0) >= 0.95
    assert followed(df, truth, 1) >= 0.95


def test_two_brownian_particles_crossing_keep_their_identities():
    """Detections of two particles of different mobility whose paths cross (2 px apart at closest)."""
    rng = np.random.default_rng(0)
    n = 80
    t = np.arange(n)
    slow = np.c_[50 + 0.02 * t, 50 + 0.01 * t] + rng.normal(0, 0.05, (n, 2))
    fast = np.c_[50 + 0.4 * (t - 40), 52.0 + 0.3 * np.sin(t / 5)] + rng.normal(0, 0.5, (n, 2))
    feats = []
    for p, xy in ((0, slow), (1, fast)):
        for f in range(n):
            if p == 1 and abs(f - 40) <= 1:  # merged into one spot for 3 frames: only the slow one is seen
                continue
            feats.append((f, xy[f, 0], xy[f, 1], p))
    features = pd.DataFrame(feats, columns=["frame", "x", "y", "true"])
    linked = linking.link(features, linking.LinkOptions(search_range=4.0, memory=5, noise=0.05))
    for p in (0, 1):
        ids = linked[linked["true"] == p]["particle"]
        assert ids.nunique() == 1, (p, ids.value_counts().to_dict())
    assert linked.groupby("particle")["true"].nunique().max() == 1


def test_particle_blinking_for_three_frames_is_one_track(tmp_path):
    rng = np.random.default_rng(1)
    n = 50
    walker = np.array([48.0, 32.0]) + np.cumsum(rng.normal(0, 0.5, (n, 2)), axis=0)
    truth = table({0: walker, **background_particles(rng, n)}, hidden={0: {20, 21, 22}})
    video = SyntheticVideo(n_frames=n, shape=(64, 96), sigma_px=1.0, amplitude=300, seed=2)
    write_video(tmp_path / "v.tif", video, truth)
    shard = st.read_shard(vt.track_video(tmp_path / "v.tif", tmp_path / "v.h5"))
    df = shard.trajectories.to_dataframe()
    first = df[df["frame"] == 0]
    tagged = first["particle"].to_numpy()[np.argmin(np.hypot(first["x"] - walker[0, 0], first["y"] - walker[0, 1]))]
    mine = df[df["particle"] == tagged]
    assert mine["frame"].tolist() == list(range(n))
    assert mine.loc[mine["interpolated"], "frame"].tolist() == [20, 21, 22]
    assert np.isnan(mine.loc[mine["interpolated"], "precision"]).all()


def test_spot_fit_recovers_known_sub_pixel_positions_better_than_centroids():
    """Isolated spots (sigma 1 px, peak 300 counts over 100, Poisson) at random sub-pixel positions."""
    import trackpy as tp

    rng = np.random.default_rng(4)
    video = SyntheticVideo(shape=(96, 96), sigma_px=1.0, amplitude=300, seed=5)
    grid = np.array([(x, y) for x in range(10, 90, 12) for y in range(10, 90, 12)], float)
    errors_fit, errors_centroid, precision = [], [], []
    for k in range(8):
        xy = grid + rng.uniform(-0.5, 0.5, grid.shape)
        image = video.render(xy, rng)
        found = tp.locate(image, 5, minmass=100)
        fit = lo.refine_frame(found, image, 1.0)
        for f, errors in ((found, errors_centroid), (fit, errors_fit)):
            d = np.hypot(f["x"].to_numpy()[:, None] - xy[None, :, 0], f["y"].to_numpy()[:, None] - xy[None, :, 1])
            errors.extend(d.min(axis=1))
        precision.extend(fit["precision"])
    rmse_fit = np.sqrt(np.mean(np.square(errors_fit)))
    rmse_centroid = np.sqrt(np.mean(np.square(errors_centroid)))
    assert len(errors_fit) == 8 * len(grid)
    assert rmse_fit < 0.06, rmse_fit
    assert rmse_fit < 0.8 * rmse_centroid, (rmse_fit, rmse_centroid)
    # the per-spot precision estimate (px per axis) matches the error actually made (2D RMSE / sqrt 2)
    assert np.median(precision) == pytest.approx(rmse_fit / np.sqrt(2), rel=0.3)


def test_measured_precision_gives_K_of_slow_particles_in_msd_fits(tmp_path):
    """Slow Brownian particles (D = 0.004 px^2/frame: steps comparable to the localisation
    error). MSD fits that subtract the precision measured in the video recover K = D; with no
    noise subtraction K is far too high."""
    D = 0.004
    video = SyntheticVideo(n_frames=100, shape=(96, 96), n_particles=12, D=D, sigma_px=1.0, amplitude=200,
                           min_separation=14, seed=6)
    truth = video.write(tmp_path / "v.tif")
    shard = st.read_shard(vt.track_video(tmp_path / "v.tif", tmp_path / "v.h5"))
    precision = shard.attrs["localisation_precision_px"]
    df = shard.trajectories.to_dataframe()
    true_error = metrics.localisation_rmse(df, truth)[0] / np.sqrt(2)
    assert precision == pytest.approx(true_error, rel=0.35), (precision, true_error)
    K_measured, K_none = [], []
    for _, g in df.groupby("particle"):
        if len(g) >= 80:
            K_measured.append(msd_fit(g["x"].to_numpy(), g["y"].to_numpy(), 4, precision)[1])
            K_none.append(msd_fit(g["x"].to_numpy(), g["y"].to_numpy(), 4, 0.0)[1])
    assert len(K_measured) >= 10
    assert np.median(K_measured) == pytest.approx(D, rel=0.25), np.median(K_measured)
    assert np.median(K_none) > 1.4 * D, np.median(K_none)


def test_segment_stage_subtracts_the_measured_precision_not_the_fixed_andi_noise():
    """A slow Brownian track (K = 0.003 px^2/frame) localised with 0.04 px noise: the MSD fit of
    the segment stage recovers K with the track's measured precision, while the fixed AnDi noise
    (0.12 px) removes more than the whole signal."""
    from anomalousnet.segments.segmentation import SegmentOptions, measured_noise, segment_trajectories

    rng = np.random.default_rng(7)
    n, K, sigma = 200, 0.003, 0.04
    arrays = []
    for _ in range(20):
        xy = np.cumsum(rng.normal(0, np.sqrt(2 * K), (n, 2)), axis=0) + rng.normal(0, sigma, (n, 2))
        arrays.append({"x": xy[:, 0], "y": xy[:, 1], "precision": np.full(n, sigma),
                       "pred_alpha": np.ones(n), "pred_K": np.full(n, 0.1), "pred_state": np.full(n, 2)})
    with_precision = st.Trajectories.from_arrays(arrays)
    without = st.Trajectories.from_arrays([{k: v for k, v in a.items() if k != "precision"} for a in arrays])
    options = SegmentOptions(min_fit_frames=20)
    K_measured = np.median(segment_trajectories(with_precision, options)["K"])
    K_fixed = np.median(segment_trajectories(without, options)["K"])
    assert measured_noise(np.r_[np.full(5, sigma), np.nan]) == pytest.approx(sigma)
    assert K_measured == pytest.approx(K, rel=0.25), K_measured
    assert K_fixed < 0.5 * K, K_fixed


def test_msd_fit_treats_filled_frames_as_missing_not_as_steps():
    """Brownian tracks (K = 0.5) with every third position filled by linear interpolation, as
    tracking fills gaps: counting the filled points as motion underestimates K; leaving out
    the displacements that touch them does not."""
    rng = np.random.default_rng(8)
    K, n = 0.5, 200
    fitted, naive = [], []
    for _ in range(30):
        xy = np.cumsum(rng.normal(0, np.sqrt(2 * K), (n, 2)), axis=0)
        observed = np.arange(n) % 3 != 1
        t = np.arange(n)
        filled = np.c_[np.interp(t, t[observed], xy[observed, 0]), np.interp(t, t[observed], xy[observed, 1])]
        fitted.append(msd_fit(filled[:, 0], filled[:, 1], 4, 0.0, observed)[1])
        naive.append(msd_fit(filled[:, 0], filled[:, 1], 4, 0.0)[1])
    assert np.median(fitted) == pytest.approx(K, rel=0.1), np.median(fitted)
    assert np.median(naive) < 0.9 * K, np.median(naive)


def test_ambiguous_encounter_is_split_not_joined():
    """Two equally fast particles cross (1 px apart): a motion model without velocity cannot
    tell which is which; with ``ambiguity`` the linker ends both tracks where they could have
    been swapped, so no track carries both particles."""
    rng = np.random.default_rng(11)
    joined = []
    for trial in range(20):
        n = 40
        t = np.arange(n)
        # paths crossing at frame 20 (1 px apart there), each going straight on
        a = np.c_[30 + 0.5 * t, 40.5 + 0.4 * (t - 20)] + rng.normal(0, 0.2, (n, 2))
        b = np.c_[30 + 0.5 * t, 39.5 - 0.4 * (t - 20)] + rng.normal(0, 0.2, (n, 2))
        feats = pd.DataFrame([(f, *xy[f], p) for p, xy in ((0, a), (1, b)) for f in range(n)],
                             columns=["frame", "x", "y", "true"])
        for margin in (0.0, 4.0):
            linked = linking.link(feats, linking.LinkOptions(search_range=3.0, memory=3, noise=0.1,
                                                             ambiguity=margin))
            joined.append((margin, int((linked.groupby("particle")["true"].nunique() > 1).any())))
    joined = pd.DataFrame(joined, columns=["margin", "joined"]).groupby("margin")["joined"].sum()
    assert joined[4.0] == 0, joined.to_dict()
    assert joined[0.0] >= 1, joined.to_dict()  # without it some encounters are swapped


def test_two_particles_in_one_spot_are_located_as_two():
    """Pairs 1.6 px apart (PSF sigma 1 px: one blob, one trackpy feature) are split into two
    detections, each within 0.2 px of its particle; isolated spots are never split."""
    import trackpy as tp

    rng = np.random.default_rng(12)
    video = SyntheticVideo(shape=(96, 96), sigma_px=1.0, amplitude=300, seed=13)
    centres = np.array([(x, y) for x in range(12, 90, 16) for y in range(12, 90, 16)], float)
    n_pairs = len(centres) // 2
    errors, counts, located = [], [], []
    for _ in range(5):
        angle = rng.uniform(0, np.pi, n_pairs)
        offset = 0.8 * np.c_[np.cos(angle), np.sin(angle)]
        c = centres + rng.uniform(-0.5, 0.5, centres.shape)
        xy = np.concatenate([c[:n_pairs] + offset, c[:n_pairs] - offset, c[n_pairs:]])
        image = video.render(xy, rng)
        found = tp.locate(image, 5, minmass=100, separation=3)
        split = lo.split_merged(lo.refine_frame(found, image, 1.0), image, 1.0)
        counts.append(len(split))
        located.append(len(found))
        d = np.hypot(split["x"].to_numpy()[None] - xy[:, 0, None], split["y"].to_numpy()[None] - xy[:, 1, None])
        errors.extend(d.min(axis=1))
    assert max(located) < len(centres) + n_pairs, located  # trackpy sees some pairs as one spot
    assert counts == [len(centres) + n_pairs] * 5, counts  # every pair two, every single one
    assert np.sqrt(np.mean(np.square(errors))) < 0.2, np.sqrt(np.mean(np.square(errors)))


def test_particles_three_psf_sigmas_apart_are_both_located(tmp_path):
    """Pairs 2.6-3.2 px apart at AnDi-2's PSF sigma (0.8 px: two peaks, but closer than the
    old separation of (diameter + 1) / 2 = 3 px): the default separation finds most of both
    particles of each pair (then fitted within 0.5 px), the old one loses a third of them and
    trackpy's own default (diameter + 1) one of each pair."""
    import trackpy as tp

    rng = np.random.default_rng(3)
    video = SyntheticVideo(shape=(96, 96), sigma_px=0.8, amplitude=250, seed=5)
    centres = np.array([(x, y) for x in range(10, 90, 14) for y in range(10, 90, 14)], float)
    angle = rng.uniform(0, np.pi, len(centres))
    half = rng.uniform(1.3, 1.6, len(centres))
    offset = half[:, None] * np.c_[np.cos(angle), np.sin(angle)]
    xy = np.concatenate([centres + offset, centres - offset])
    image = video.render(xy, rng)
    diameter = vt.diameter_for_sigma(0.8)
    separation = vt.default_separation(diameter, 0.8)
    assert separation == pytest.approx(2.4)
    recall = {}
    for sep in (separation, (diameter + 1) / 2, diameter + 1):
        found = lo.refine_frame(tp.locate(image, diameter, minmass=100, separation=sep), image, 0.8)
        d = np.hypot(found["x"].to_numpy()[None] - xy[:, 0, None], found["y"].to_numpy()[None] - xy[:, 1, None])
        assert len(found) <= len(xy)  # no spot found twice
        recall[sep] = (d.min(axis=1) < 0.5).mean()
    assert recall[separation] >= 0.85, recall  # measured 0.875
    assert recall[(diameter + 1) / 2] <= 0.75, recall  # measured 0.69
    assert recall[diameter + 1] <= 0.55, recall  # measured 0.50: one of each pair


def test_spot_model_is_chosen_by_the_fit_to_the_video():
    """Gaussian spots (SyntheticVideo) choose the Gaussian model; spots rendered as deeptrack
    does (a point split bilinearly over 4 pixels, then blurred; the AnDi-2 videos) choose
    "bilinear", whose fit then localises them better than the Gaussian's."""
    import pandas as pd

    rng = np.random.default_rng(8)
    centres = np.array([(x, y) for x in range(8, 88, 16) for y in range(8, 88, 16)], float)
    images, feats, truth = {}, [], []
    for k in range(4):
        xy = centres + rng.uniform(-0.5, 0.5, centres.shape)
        gaussian = SyntheticVideo(shape=(96, 96), sigma_px=0.85, amplitude=400, background=60).render(xy, rng)
        blur = lo.model_sigma(0.85, "bilinear")
        bilinear = rng.poisson(60 + lo._render((96, 96), xy[:, 0], xy[:, 1], np.full(len(xy), 400.0), blur, 4,
                                               "bilinear")).astype(float)
        images.setdefault("gaussian", []).append(gaussian)
        images.setdefault("bilinear", []).append(bilinear)
        start = xy + rng.normal(0, 0.15, xy.shape)
        feats.append(pd.DataFrame({"frame": k, "x": start[:, 0], "y": start[:, 1]}))
        truth.append(xy)
    feats = pd.concat(feats, ignore_index=True)
    for rendered in ("gaussian", "bilinear"):
        assert lo.choose_model(images[rendered], feats, 0.85) == rendered
    errors = {}
    for model in ("gaussian", "bilinear"):
        e = []
        for k, image in enumerate(images["bilinear"]):
            f = feats[feats["frame"] == k]
            fit = lo.fit_frame(image, f["x"].to_numpy(), f["y"].to_numpy(), lo.model_sigma(0.85, model), passes=1,
                               model=model)
            e.extend(np.hypot(fit["x"] - truth[k][:, 0], fit["y"] - truth[k][:, 1]))
        errors[model] = np.sqrt(np.mean(np.square(e)))
    assert errors["bilinear"] < 0.95 * errors["gaussian"], errors  # measured 0.054 vs 0.060 px


def test_particle_in_a_merged_spot_cannot_jump_from_its_old_anchor():
    """A and B merge into one bright spot (frames 5-8) that A takes while B is undetected, so
    A's anchor stays at its frame-4 position. A spot 6.5 px from that anchor in frame 9 is
    within the reach of a 5-frame gap, but 6.9 px from where A was seen a frame earlier: it
    must start a new track, not continue A's (on AnDi-2 dimers such jumps made K 60x too large)."""
    rows = []
    for t in range(10):
        for k, (cx, cy) in enumerate([(60.0, 60.0), (60.0, 80.0), (80.0, 60.0)]):  # far, steady spots
            rows.append((t, cx, cy, 1.0, f"C{k}"))
        if t <= 4:
            rows += [(t, 20.0 + 0.05 * (-1) ** t, 20.0, 1.0, "A"), (t, 17.5, 20.0 + 0.05 * (-1) ** t, 1.0, "B")]
        elif t <= 8:
            rows.append((t, 19.6, 20.0, 2.0, "A"))  # merged spot: A and B as one, twice as bright
        else:
            rows.append((t, 26.5, 20.0, 1.0, "D"))
    feats = pd.DataFrame(rows, columns=["frame", "x", "y", "mass", "true"])
    linked = linking.link(feats, linking.LinkOptions(search_range=3.0, memory=8, noise=0.05))
    a = linked.loc[linked["true"] == "A", "particle"].unique()
    assert len(a) == 1  # A kept through the merged frames
    assert linked.loc[linked["true"] == "D", "particle"].iloc[0] not in set(a)
