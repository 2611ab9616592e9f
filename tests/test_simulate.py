"""Simulation: labels agree with positions, the challenge's label filter and change points,
reproducibility across worker counts, resume, balance, and AnDi-2 datasets that the
official scorer grades perfectly when the reference is submitted."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from andi_datasets import utils_challenge

from anomalousnet.simulation import andi_dataset as ad
from anomalousnet.simulation import seeding
from anomalousnet.simulation import training_store as sim
from anomalousnet.io import store as st

SMALL = sim.SimulationConfig(length=60, min_length=20)


def read_store(path):
    return [(s.path.name, s.trajectories, s.tables) for s in st.iter_shards(path)]


def assert_same_store(a, b):
    assert [name for name, *_ in a] == [name for name, *_ in b]
    for (_, ta, tab_a), (_, tb, tab_b) in zip(a, b):
        assert np.array_equal(ta.offsets, tb.offsets)
        for name in ta.points:
            assert ta.points[name].tobytes() == tb.points[name].tobytes(), name
        for name in ta.tracks:
            assert np.array_equal(ta.tracks[name], tb.tracks[name]), name
        for name in tab_a["segments"]:
            assert np.array_equal(tab_a["segments"][name], tab_b["segments"][name]), name


# ----------------------------------------------------------------------------- label filter

def test_label_filter_gives_the_official_filters_output():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(120):
        n = int(rng.integers(3, 120))
        k = int(rng.integers(2, 5))
        values = rng.choice(rng.uniform(0, 2, k), size=n)
        if rng.uniform() < 0.5:  # runs, as the simulator makes them, rather than i.i.d. labels
            values = np.repeat(values[: max(1, n // 6)], 6)[:n]
        cases.append(values)
    cases.append(np.array([1.0, 1.0, 1.0]))
    cases.append(np.array([0.0, 2.0, 2.0, 0.0, 0.0, 2.0, 1.0]))
    for values in cases:
        ours = sim.label_filter(values, 5, 3)
        official = utils_challenge.label_filter(values.copy(), window_size=5, min_seg=3)
        assert np.array_equal(ours, official), values


def test_joint_filter_equals_the_per_column_filter_when_columns_change_together():
    rng = np.random.default_rng(1)
    for _ in range(40):
        sets = np.array([[rng.uniform(0, 2), rng.uniform(0.01, 1), rng.integers(0, 4)] for _ in range(2)])
        labels = sets[rng.integers(0, 2, size=rng.integers(3, 60))]
        joint = sim.filter_labels(labels)
        for j in range(3):
            assert np.array_equal(joint[j], utils_challenge.label_filter(labels[:, j].copy(), 5, 3))


# ----------------------------------------------------------------------------- labels vs positions

def tamsd_exponent(x, y, lags=np.arange(1, 11)):
    msd = [np.mean((x[lag:] - x[:-lag]) ** 2 + (y[lag:] - y[:-lag]) ** 2) for lag in lags]
    return np.polyfit(np.log(lags), np.log(msd), 1)[0], msd[0]


def test_single_state_labels_agree_with_positions():
    cfg = sim.SimulationConfig(length=200, min_length=200, models=("single_state",), noise_range=(0.0, 0.0),
                               directed_fraction=0.3)
    traj, _ = sim.simulate_tracks(150, seed=11, config=cfg)
    alpha = np.array([t["alpha"][0] for t in traj])
    K = np.array([t["K"][0] for t in traj])
    est = np.array([tamsd_exponent(t["x"], t["y"]) for t in traj])
    assert np.all(traj.lengths == 200)
    assert np.median(np.abs(est[:, 0] - alpha)) < 0.2
    directed = alpha >= sim.ALPHA_DIRECTED
    assert directed.sum() >= 20 and np.all([np.all(t["state"] == 3) for t, d in zip(traj, directed) if d])
    assert np.mean(est[directed, 0]) > 1.7
    assert np.mean(est[alpha < 0.5, 0]) < 0.6
    # MSD at lag 1 is 2 * 2 K (two dimensions): K is in px^2 / frame^alpha
    assert 0.7 < np.median(est[:, 1] / (4 * K)) < 1.4


def test_states_match_labels_and_immobile_points_do_not_move():
    traj, _ = sim.simulate_tracks(400, seed=5, config=SMALL)
    state, alpha, K = traj.points["state"], traj.points["alpha"], traj.points["K"]
    assert set(np.unique(state)) == {0, 1, 2, 3}
    assert np.all(alpha[state == 3] >= sim.ALPHA_DIRECTED)
    assert np.all((alpha[state == 2] > 0) & (alpha[state == 2] < sim.ALPHA_DIRECTED))
    assert np.all((alpha[state == 0] == 0) & (K[state == 0] == 0))
    assert np.all(K[state != 0] > 0)
    steps, noise = [], []
    for i, t in enumerate(traj):
        for start, end, *_, s in sim.segments_of(t["alpha"], t["K"], t["state"]):
            if s == 0 and end - start >= 8:  # interior: the label filter may move a boundary by 2 frames
                steps.append(np.hypot(np.diff(t["x"][start + 2:end - 2]), np.diff(t["y"][start + 2:end - 2])))
                noise.append(np.full(len(steps[-1]), traj.tracks["noise"][i]))
    steps, noise = np.concatenate(steps), np.concatenate(noise)
    assert len(steps) >= 200
    # a trapped particle does not move: its steps are localisation noise (sd sqrt(2) sigma per axis);
    # the label filter may call a free stint of 1-2 frames immobile, hence the 2 % allowance
    assert np.mean(steps > 5 * 2 * noise + 1e-9) < 0.02
    assert np.median(steps / np.maximum(noise, 1e-9)) < 2.5


def test_change_points_in_files_match_label_changes(tmp_path):
    summary = sim.simulate_training(tmp_path / "s", 150, seed=2, config=SMALL, shard_size=75, workers=0,
                                    progress=False)
    assert not summary.failed
    n_with_changes = 0
    for _, traj, tables in read_store(tmp_path / "s"):
        seg = pd.DataFrame(tables["segments"])
        for i, particle in enumerate(traj.tracks["particle"]):
            t = traj.track(i)
            rows = seg[seg.particle == particle]
            labs = np.stack([t["alpha"], t["K"], t["state"]], axis=1).astype(float)
            cps, alphas, Ks, states = utils_challenge.label_continuous_to_list(labs)
            assert rows.start.tolist() == [0] + cps[:-1].tolist()
            assert rows.end.tolist() == cps.tolist() and cps[-1] == len(t["x"])
            assert np.allclose(rows.alpha, alphas) and np.allclose(rows.K, Ks) and np.array_equal(rows.state, states)
            if len(rows) > 1:
                n_with_changes += 1
                assert (rows.end - rows.start).min() >= 3  # the challenge's minimum segment
    assert n_with_changes >= 20


# ----------------------------------------------------------------------------- store, seeds, resume, balance

def test_same_seed_gives_identical_data_whatever_the_worker_count(tmp_path):
    kw = dict(n=90, seed=9, config=SMALL, shard_size=30, progress=False)
    sim.simulate_training(tmp_path / "w0", workers=0, **kw)
    sim.simulate_training(tmp_path / "w1", workers=1, **kw)
    sim.simulate_training(tmp_path / "w2", workers=2, **kw)
    base = read_store(tmp_path / "w0")
    assert len(base) == 3
    assert_same_store(base, read_store(tmp_path / "w1"))
    assert_same_store(base, read_store(tmp_path / "w2"))
    other = sim.simulate_tracks(30, seeding.seed_for(10, 0), SMALL)[0]
    assert other.points["x"].shape != base[0][1].points["x"].shape or \
        not np.array_equal(other.points["x"], base[0][1].points["x"])


def test_resume_redoes_only_missing_shards_and_refuses_other_parameters(tmp_path):
    out = tmp_path / "s"
    first = sim.simulate_training(out, 100, seed=4, config=SMALL, shard_size=25, workers=0, progress=False)
    before = read_store(out)
    assert len(first.written) == 4 and first.counts["tracks"] == 100
    (out / "shard-00002.h5").unlink()
    (out / "shard-00003.h5").write_bytes(b"damaged")
    again = sim.simulate_training(out, 100, seed=4, config=SMALL, shard_size=25, workers=0, progress=False)
    assert [p.name for p in again.written] == ["shard-00002.h5", "shard-00003.h5"]
    assert [p.name for p in again.kept] == ["shard-00000.h5", "shard-00001.h5"]
    assert (out / "shard-00003.h5.corrupt").exists()
    assert again.counts == first.counts
    assert_same_store(before, read_store(out))
    st.validate_store(out)
    with pytest.raises(ValueError, match="other parameters"):
        sim.simulate_training(out, 100, seed=5, config=SMALL, shard_size=25, workers=0, progress=False)


def test_weights_and_directed_fraction_steer_the_mix_and_counts_are_reported(tmp_path):
    cfg = sim.SimulationConfig(length=60, min_length=60, model_weights={"single_state": 3, "confinement": 1},
                               directed_fraction=1.0)
    summary = sim.simulate_training(tmp_path / "s", 80, seed=1, config=cfg, shard_size=80, workers=0,
                                    progress=False)
    (_, traj, _), = read_store(tmp_path / "s")
    c = summary.counts
    assert c["model_tracks"] == {"single_state": 60, "multi_state": 0, "immobile_traps": 0, "dimerization": 0,
                                 "confinement": 20}
    single = traj.tracks["model"] == "single_state"
    assert np.all(np.repeat(single, traj.lengths) <= (traj.points["state"] == 3))  # all single-state tracks directed
    assert c["state_points"] == {s: int(np.sum(traj.points["state"] == i)) for i, s in enumerate(sim.STATES)}
    assert c["state_points"]["confined"] > 0 and c["points"] == traj.n_points == 80 * 60
    none = sim.simulate_tracks(40, 3, sim.SimulationConfig(length=60, directed_fraction=0.0,
                                                           models=("single_state", "multi_state")))[0]
    assert not np.any(none.points["state"] == 3)


def test_default_mix_represents_every_state():
    traj, _ = sim.simulate_tracks(400, seed=21)
    counts = sim.count_labels(traj)
    assert min(counts["state_points"].values()) / traj.n_points > 0.04, counts
    assert min(counts["state_tracks"].values()) / traj.n_tracks > 0.08, counts


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model"):
        sim.SimulationConfig(models=("brownian",))
    with pytest.raises(ValueError, match="min_length"):
        sim.SimulationConfig(length=50, min_length=60)
    with pytest.raises(ValueError, match="weight"):
        sim.SimulationConfig(model_weights={"single_state": -1})


# ----------------------------------------------------------------------------- AnDi-2 datasets

def submit_reference(dataset: Path, submission: Path) -> None:
    """The reference labels as a submission (track 1: the VIP lines only, as participants do)."""
    for ref in sorted((dataset / "ref").glob("track_*/exp_*")):
        dst = submission / ref.parent.name / ref.name
        dst.mkdir(parents=True)
        shutil.copy(ref / "ensemble_labels.txt", dst)
        for labels in ref.glob("traj_labs_fov_*.txt"):
            fov = labels.stem.split("_")[-1]
            lines = labels.read_text().splitlines()
            if ref.parent.name == "track_1":
                vip = set(np.loadtxt(ref / f"vip_idx_fov_{fov}.txt", ndmin=1).astype(int).tolist())
                lines = [line for line in lines if int(line.split(",")[0]) in vip]
            (dst / f"fov_{fov}.txt").write_text("\n".join(lines) + "\n")


def official_scores(dataset: Path, tmp_path: Path) -> dict:
    submit_reference(dataset, tmp_path / "submission")
    utils_challenge.codalab_scoring_local(str(tmp_path / "submission"), str(dataset / "ref"), str(tmp_path / "score"))
    lines = (tmp_path / "score" / "scores.txt").read_text().split("\n")
    return {k: float(v) for k, v in (line.split(": ") for line in lines if line)}


def test_andi_dataset_is_scored_perfectly_and_files_agree(tmp_path):
    out = tmp_path / "andi"
    summary = ad.simulate_andi(out, seed=3, experiments=5, fovs=2, length=60, progress=False)
    assert not summary.failed and len(summary.written) == 10
    assert summary.info["models"] == list(sim.MODELS)
    scores = official_scores(out, tmp_path)
    assert scores["tr2.ta1.JI"] == 1.0 and scores["tr2.ta1.alpha"] == 0.0 and scores["tr2.ta1.D"] == 0.0
    assert scores["tr2.ta1.state"] == 1.0 and scores["tr2.ta1.cp"] == 0.0
    assert scores["tr2.ta2.alpha"] == 0.0 and scores["tr2.ta2.D"] == 0.0
    for e in range(5):
        for f in range(2):
            public = pd.read_csv(out / f"public/track_2/exp_{e}/trajs_fov_{f}.csv")
            truth = pd.read_csv(out / f"ref/track_2/exp_{e}/trajs_fov_{f}.csv")
            assert list(public.columns) == ["traj_idx", "frame", "x", "y"]
            assert public[["traj_idx", "frame"]].equals(truth[["traj_idx", "frame"]])
            assert 0.08 < np.std(public.x - truth.x_true) < 0.16  # the challenge's 0.12 px noise
            lengths = public.groupby("traj_idx").size()
            for line in (out / f"ref/track_2/exp_{e}/traj_labs_fov_{f}.txt").read_text().splitlines():
                values = line.split(",")
                assert lengths[int(values[0])] == int(values[-1])
    # resume: nothing to redo; other parameters refused
    again = ad.simulate_andi(out, seed=3, experiments=5, fovs=2, length=60, progress=False)
    assert again.written == [] and len(again.kept) == 10
    with pytest.raises(ValueError, match="other parameters"):
        ad.simulate_andi(out, seed=4, experiments=5, fovs=2, length=60, progress=False)


def test_andi_video_labels_follow_the_vip_renumbering(tmp_path):
    pytest.importorskip("deeptrack", reason="videos need the 'video' extra (deeptrack==2.0.0)")
    import tifffile

    out = tmp_path / "andi"
    # seed 1: the simulator's VIPs are not its first trajectories, so it renumbers them
    summary = ad.simulate_andi(out, seed=1, experiments=["multi_state"], videos=True, length=40, num_vip=5,
                                progress=False)
    assert not summary.failed and summary.info["results"][(0, 0)]["renumbered"] > 0
    scores = official_scores(out, tmp_path)
    for track in (1, 2):
        assert scores[f"tr{track}.ta1.JI"] == 1.0 and scores[f"tr{track}.ta1.alpha"] == 0.0
    vip = np.loadtxt(out / "public/track_1/exp_0/vip_idx_fov_0.txt", ndmin=1).astype(int)
    assert vip.tolist() == list(range(5))
    truth = pd.read_csv(out / "ref/track_1/exp_0/trajs_fov_0.csv")
    with tifffile.TiffFile(out / "public/track_1/exp_0/videos_fov_0.tiff") as tif:
        pages = [p.asarray() for p in tif.pages]
    assert len(pages) == 41 and pages[0].shape == (128, 128)
    for i in vip:  # page 0 marks VIP i where the ground truth starts it
        rows, cols = np.nonzero(pages[0] == i)
        first = truth[truth.traj_idx == i].iloc[0]
        assert abs(rows.mean() - first.row) < 1.0 and abs(cols.mean() - first.col) < 1.0
    checked = 0  # and in the frames, each VIP's spot is where the ground truth puts it
    for frame in (10, 20, 30):
        image = pages[frame + 1].astype(float)
        now = truth[truth.frame == frame]
        for i in vip:
            t = now[now.traj_idx == i]
            others = now[now.traj_idx != i]
            if not len(t) or np.hypot(others.row - t.row.iloc[0], others.col - t.col.iloc[0]).min() < 5:
                continue  # gone, or its spot overlaps another particle's
            r, c = int(round(t.row.iloc[0])), int(round(t.col.iloc[0]))
            if 3 <= r < 125 and 3 <= c < 125:
                win = image[r - 3:r + 4, c - 3:c + 4]
                win = np.clip(win - np.median(win), 0, None)  # the spot above the background
                rr, cc = np.mgrid[r - 3:r + 4, c - 3:c + 4]
                assert abs((rr * win).sum() / win.sum() - t.row.iloc[0]) < 0.5
                assert abs((cc * win).sum() / win.sum() - t.col.iloc[0]) < 0.5
                checked += 1
    assert checked >= 6


# ----------------------------------------------------------------------------- command line

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "anomalousnet_cli", "simulate", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_writes_a_valid_store_and_reports_counts(tmp_path):
    out = run_cli("trajectories", "--out", str(tmp_path / "s"), "--n", "40", "--seed", "1", "--length", "40",
                  "--shard-size", "20", "--workers", "0", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "2 shards written" in out.stdout and "40 tracks" in out.stdout and "state 3 directed" in out.stdout
    assert st.validate_store(tmp_path / "s").kind == "training"
    bad = run_cli("trajectories", "--out", str(tmp_path / "t"), "--n", "4", "--seed", "1",
                  "--model-weight", "brownian=2")
    assert bad.returncode == 2 and "MODEL=WEIGHT" in bad.stderr and not (tmp_path / "t").exists()
    bad = run_cli("andi", "--out", str(tmp_path / "a"), "--seed", "1", "--experiments", "single_state,brownian")
    assert bad.returncode == 1 and "unknown model 'brownian'" in bad.stderr
