"""The Python API on DataFrames (anomalousnet.analyse / predict / track) and frame gaps."""
import numpy as np
import pandas as pd
import pytest

import anomalousnet
from anomalousnet.core.trajectories import FrameGapError, Trajectories, fill_frame_gaps


def walks(steps_K: list[list[tuple[int, float]]], seed: int = 0) -> pd.DataFrame:
    """Brownian trajectories, each a list of (frames, K) pieces: 2D steps of variance 2 K per axis."""
    rng = np.random.default_rng(seed)
    rows = []
    for particle, pieces in enumerate(steps_K):
        sd = np.concatenate([np.full(n, np.sqrt(2 * K)) for n, K in pieces])
        xy = np.cumsum(rng.normal(0, 1, (len(sd), 2)) * sd[:, None], axis=0) + 50
        rows.append(pd.DataFrame({"particle": particle, "frame": np.arange(len(sd)) + 5, "x": xy[:, 0],
                                  "y": xy[:, 1]}))
    return pd.concat(rows, ignore_index=True)


def test_analyse_finds_a_change_of_K_and_returns_three_tables():
    df = walks([[(100, 0.02), (100, 1.0)], [(150, 0.5)]])
    points, segments, ensemble = anomalousnet.analyse(df.sample(frac=1, random_state=1))  # any row order
    assert len(points) == len(df) and {"pred_alpha", "pred_K", "pred_state", "pred_p_free", "fallback"} <= \
        set(points.columns)
    assert points.groupby("particle")["frame"].apply(lambda f: f.is_monotonic_increasing).all()
    first = segments[segments["particle"] == 0]
    assert len(first) == 2 and abs(int(first["start"].iloc[1]) - 100) <= 3
    assert first["frame_start"].iloc[1] == first["start"].iloc[1] + 5  # frames start at 5
    assert first["K"].iloc[1] / first["K"].iloc[0] > 10  # slow then fast
    assert set(segments.columns) >= {"particle", "start", "end", "alpha", "K", "state", "state_name"}
    assert ensemble["weight"].sum() == pytest.approx(1.0) and "state_name" in ensemble
    zones = pd.DataFrame(segments.attrs["zones"])  # the field-of-view stage's table (two tracks: nothing to map)
    assert zones.empty or {"x", "y", "radius", "kind"} <= set(zones.columns)
    _, unstaged, _ = anomalousnet.analyse(df, zones=False)
    assert unstaged.attrs["zones"] == []


def test_pooling_over_the_fov_brings_segment_values_closer_to_a_shared_truth():
    rng = np.random.default_rng(4)
    df = walks([[(int(n), 0.5)] for n in rng.integers(30, 120, 20)], seed=4)  # one state: alpha 1, K 0.5
    _, pooled, _ = anomalousnet.analyse(df)
    _, alone, _ = anomalousnet.analyse(df, pool_values=False)
    free = (pooled["state_name"] == "free").to_numpy()
    assert free.sum() >= 15

    def errors(s):
        return (np.mean(np.abs(s["alpha"].to_numpy()[free] - 1)),
                np.mean(np.abs(np.log10(s["K"].to_numpy()[free] / 0.5))))

    (a_pooled, k_pooled), (a_alone, k_alone) = errors(pooled), errors(alone)
    assert a_pooled < 0.7 * a_alone and k_pooled < 0.8 * k_alone
    assert pooled["alpha"].std() < alone["alpha"].std()


def test_predict_scales_K_with_the_square_of_the_coordinates():
    df = walks([[(120, 0.3)]], seed=3)
    small = anomalousnet.predict(df)
    big = anomalousnet.predict(df.assign(x=df["x"] * 10, y=df["y"] * 10))
    assert np.allclose(big["pred_K"], 100 * small["pred_K"], rtol=1e-3)
    assert np.allclose(big["pred_alpha"], small["pred_alpha"], atol=1e-4)


def test_frame_gaps_are_named_or_filled_and_flagged_never_joined():
    df = walks([[(60, 0.5)]])
    gappy = df[(df["frame"] < 25) | (df["frame"] >= 35)]  # frames 25..34 missing
    with pytest.raises(FrameGapError, match=r"trajectory 0: frame 25 missing \(jumps from 24 to 35\).*fill_gaps"):
        anomalousnet.predict(gappy)
    points = anomalousnet.predict(gappy, fill_gaps=True)
    assert len(points) == 60 and points["interpolated"].sum() == 10
    filled = points[points["interpolated"]]
    assert filled["frame"].tolist() == list(range(25, 35))
    # linear interpolation between the last position before and the first after the gap
    x24, x35 = df.loc[df["frame"] == 24, "x"].item(), df.loc[df["frame"] == 35, "x"].item()
    assert filled["x"].iloc[0] == pytest.approx(x24 + (x35 - x24) / 11)


def test_fill_frame_gaps_keeps_per_track_columns_and_nans_the_rest():
    df = pd.DataFrame({"particle": [3, 3, 7, 7], "frame": [0, 3, 1, 2], "x": [0.0, 3.0, 1.0, 1.0],
                       "y": [0.0, 0.0, 2.0, 2.0], "mass": [5.0, 6.0, 7.0, 8.0], "vip": [1, 1, -1, -1]})
    out = fill_frame_gaps(df, keep=("vip",))
    assert out["frame"].tolist() == [0, 1, 2, 3, 1, 2] and out["x"].tolist()[:4] == [0.0, 1.0, 2.0, 3.0]
    assert out["interpolated"].tolist() == [False, True, True, False, False, False]
    assert np.isnan(out["mass"].iloc[1]) and out["vip"].tolist() == [1, 1, 1, 1, -1, -1]
    traj = Trajectories.from_dataframe(df, track_columns=("vip",), fill_gaps=True)
    assert traj.lengths.tolist() == [4, 2] and traj.tracks["vip"].tolist() == [1, -1]
    with pytest.raises(FrameGapError, match="trajectory 3: frame 1 given twice"):
        fill_frame_gaps(pd.DataFrame({"particle": [3, 3], "frame": [1, 1], "x": [0.0, 1.0], "y": [0.0, 0.0]}))


def test_bad_tables_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="lacks column\\(s\\) frame"):
        anomalousnet.predict(pd.DataFrame({"particle": [0], "x": [1.0], "y": [1.0]}))
    with pytest.raises(ValueError, match="frame must hold integers"):
        anomalousnet.predict(pd.DataFrame({"particle": [0, 0], "frame": [0, 0.5], "x": [1.0, 2.0], "y": [1.0, 1.0]}))


def test_track_returns_one_trajectory_per_particle_from_an_array():
    from anomalousnet.simulation.synthetic_video import SyntheticVideo

    video = SyntheticVideo(n_frames=30, shape=(64, 64), n_particles=4, D=0.2, seed=2, amplitude=400)
    truth = video.truth()
    frames = np.stack(list(video.frames(truth)))
    table = anomalousnet.track(frames, diameter=7)
    assert {"particle", "frame", "x", "y", "interpolated", "vip"} <= set(table.columns)
    assert table["particle"].nunique() == 4 and table.groupby("particle").size().tolist() == [30] * 4
    assert table.attrs["tracking"]["used"]["diameter"] == 7
    # positions match the truth to well under a pixel
    merged = table.merge(truth, on="frame", suffixes=("", "_true"))
    d = np.hypot(merged["x"] - merged["x_true"], merged["y"] - merged["y_true"])
    assert (merged.assign(d=d).groupby(["particle", "frame"])["d"].min() < 0.5).mean() > 0.95
