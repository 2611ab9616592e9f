"""AnDi-2 formats, official scoring with reported problems, submissions from public data."""
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from anomalousnet.andi import baselines, methods, scoring, submission
from anomalousnet.io import andi_files as af
from anomalousnet.io import store as st

CLI = [sys.executable, "-m", "anomalousnet_cli"]


def _andi_dataset(root: Path, models=(1, 2), fovs=(2, 1), seed=3):
    """Reference and public folders made by andi_datasets itself (one call per FOV, as its
    reorganiser handles only one FOV per call), plus a track-1 reference over the same labels
    with VIPs 0, 2, 4 (the scorer needs no video)."""
    import stochastic.random
    from andi_datasets.datasets_challenge import challenge_phenom_dataset

    np.random.seed(seed)
    random.seed(seed)
    stochastic.random.seed(seed)
    ref, public = root / "ref", root / "public"
    for exp, (model, n_fovs) in enumerate(zip(models, fovs)):
        for fov in range(n_fovs):
            raw = root / "raw" / f"e{exp}f{fov}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                challenge_phenom_dataset(experiments=[model], num_fovs=1, save_data=True, path=raw, files_reorg=True,
                                         path_reorg="ref/", save_labels_reorg=True)
            src = raw / "ref" / "track_2" / "exp_0"
            for track in (1, 2):
                dst = ref / f"track_{track}" / f"exp_{exp}"
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / "traj_labs_fov_0.txt", dst / f"traj_labs_fov_{fov}.txt")
                shutil.copy(src / "ensemble_labels.txt", dst / "ensemble_labels.txt")
            af.write_vip_idx(ref / "track_1" / f"exp_{exp}" / f"vip_idx_fov_{fov}.txt", [0, 2, 4])
            (public / "track_2" / f"exp_{exp}").mkdir(parents=True, exist_ok=True)
            shutil.copy(src / "trajs_fov_0.csv", public / "track_2" / f"exp_{exp}" / f"trajs_fov_{fov}.csv")
    return ref, public


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _andi_dataset(tmp_path_factory.mktemp("andi"))


def test_label_line_round_trip_and_parse_errors(tmp_path):
    label = af.TrajectoryLabel(7, (1.5, 0.01), (0.8, 0.3), (2, 0), (120,), 200)
    path = af.write_labels(tmp_path / "fov_0.txt", [label])
    assert path.read_text() == "7,1.5,0.8,2,120,0.01,0.3,0,200\n"
    back, problems = af.read_labels(path)
    assert back == [label] and not problems
    assert back[0].per_frame()["state"].tolist() == [2] * 120 + [0] * 80
    for bad, why in [("1,1.0,1.0,2", "fields"), ("1,1.0,x,2,200", "not a number"), ("1,1.0,1.0,2.5,200", "integers"),
                     ("1,1,1,2,150,1,1,2,100", "increase"), ("1,nan,1,2,200", "NaN")]:
        (tmp_path / "bad.txt").write_text(bad + "\n")
        with pytest.raises(af.AndiFormatError, match=why) as err:
            af.read_labels(tmp_path / "bad.txt")
        assert "bad.txt:1" in str(err.value)


def test_ensemble_round_trip_and_errors(tmp_path):
    ens = af.EnsembleLabel("multi_state", np.array([[1.1, 0.5], [0.01, 0.01], [1.0, 0.05], [0.01, 0.0005],
                                                      [0.7, 0.3]]))
    back = af.read_ensemble(af.write_ensemble(tmp_path / "ensemble_labels.txt", ens))
    assert back.model == "multi_state" and np.array_equal(back.matrix, ens.matrix)
    # the official reader (np.loadtxt, skiprows=1, ';') reads the same numbers
    assert np.array_equal(np.loadtxt(tmp_path / "ensemble_labels.txt", skiprows=1, delimiter=";"), ens.matrix)
    (tmp_path / "e.txt").write_text("model: x; num_state: 1\n1\n2\n3\n")
    with pytest.raises(af.AndiFormatError, match="3 rows of numbers; expected 5"):
        af.read_ensemble(tmp_path / "e.txt")


def test_reference_submitted_as_prediction_scores_perfectly(dataset, tmp_path):
    ref, _ = dataset
    scoring.reference_as_submission(ref, tmp_path / "sub")
    assert sorted(p.name for p in (tmp_path / "sub" / "track_1" / "exp_0").iterdir()) == \
        ["ensemble_labels.txt", "fov_0.txt", "fov_1.txt"]
    report = scoring.score(tmp_path / "sub", ref)
    assert report.complete and report.tracks() == [1, 2]
    for track in (1, 2):
        overall = report.overall(track)
        assert overall["cp_rmse"] == 0 and overall["cp_jaccard"] == 1 and overall["alpha_mae"] == 0
        assert overall["K_msle"] == 0 and overall["state_f1"] == 1
        assert overall["ens_alpha_w1"] == pytest.approx(0, abs=1e-9) and overall["ens_K_w1"] == pytest.approx(0, abs=1e-9)
        assert overall["n_scored"] == overall["n_expected"] > 0
    assert report.overall(1)["n_expected"] == 3 * 3  # three VIPs in each of three FOVs
    assert all(v["recall"] in (None, 1.0) for v in report.state_recall(2).values())


def test_missing_fov_file_is_reported_not_scored_at_maximum_error(dataset, tmp_path):
    ref, _ = dataset
    sub = tmp_path / "sub"
    scoring.reference_as_submission(ref, sub, tracks=[2])
    (sub / "track_2" / "exp_0" / "fov_1.txt").unlink()
    report = scoring.score(sub, ref, tracks=[2], ensemble=False)
    assert [(p.kind, Path(p.path).name) for p in report.problems] == [("missing_file", "fov_1.txt")]
    exp0 = report.experiments[0]
    n_fov1 = len(af.read_labels(ref / "track_2" / "exp_0" / "traj_labs_fov_1.txt")[0])
    assert exp0.n_scored == exp0.n_expected - n_fov1
    assert exp0.metrics["alpha_mae"] == 0 and exp0.metrics["cp_jaccard"] == 1  # the rest still scores perfectly
    out = subprocess.run([*CLI, "andi", "score", "--sub", str(sub), "--ref", str(ref), "--tracks", "2",
                          "--no-ensemble"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "missing_file" in out.stdout and "fov_1.txt" in out.stdout and "INCOMPLETE" in out.stderr


def test_malformed_lines_and_wrong_indices_are_reported(dataset, tmp_path):
    ref, _ = dataset
    sub = tmp_path / "sub"
    scoring.reference_as_submission(ref, sub)
    path = sub / "track_2" / "exp_1" / "fov_0.txt"
    lines = path.read_text().splitlines()
    first = af.parse_label_line(lines[0].split(","))
    lines[0] = "garbage,1"
    lines[1] = lines[1] + ",5"  # wrong field count
    lines.append(",".join(submission.fallback_label(9999, 10).to_fields()))  # not a trajectory of the reference
    third = af.parse_label_line(lines[2].split(","))
    lines.append(",".join(submission.fallback_label(third.idx, third.T).to_fields()))  # duplicate index
    path.write_text("\n".join(lines) + "\n")
    (sub / "track_1" / "exp_1" / "fov_0.txt").write_text(
        ",".join(submission.fallback_label(1, 200).to_fields()) + "\n")  # 1 is not a VIP; 0, 2, 4 are missing
    (sub / "track_2" / "exp_0" / "ensemble_labels.txt").write_text("model: x; num_state: 1\n1;2\n")
    report = scoring.score(sub, ref)
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == sorted(["malformed_line", "malformed_line", "unexpected_trajectory", "duplicate_trajectory",
                            "missing_trajectory", "unexpected_trajectory", "missing_trajectory", "malformed_file"])
    assert any("track 1 takes exactly the VIP indices" in p.detail for p in report.problems)
    exp1 = [e for e in report.experiments if e.track == 2 and e.exp == 1][0]
    assert exp1.n_scored == exp1.n_expected - 2 and exp1.metrics["alpha_mae"] == 0
    second = af.parse_label_line(lines[1].split(",")[:-1])
    missing = [p.detail for p in report.problems if p.kind == "missing_trajectory" and "track_2" in p.path][0]
    assert f"{sorted([first.idx, second.idx])}" in missing  # the two malformed lines' trajectories


def test_scores_equal_the_official_scorer(dataset, tmp_path):
    """Same numbers as andi_datasets.utils_challenge.codalab_scoring_local on a complete,
    imperfect submission (the classical baseline)."""
    from andi_datasets.utils_challenge import codalab_scoring_local

    ref, public = dataset
    sub = tmp_path / "sub"
    summary = submission.run_public(public, sub, baselines.classical, tracks=[2], progress=False)
    assert summary.counts.get("fallback", {}) == {}
    report = scoring.score(sub, ref, tracks=[2])
    assert report.complete
    ref2 = tmp_path / "ref2"  # the official scorer needs every track of the reference submitted
    shutil.copytree(ref / "track_2", ref2 / "track_2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codalab_scoring_local(str(sub) + "/", str(ref2) + "/", str(tmp_path / "out"))
    official = dict(line.split(": ") for line in (tmp_path / "out" / "scores.txt").read_text().splitlines())
    ours = report.overall(2)
    names = {"cp": "cp_rmse", "JI": "cp_jaccard", "alpha": "alpha_mae", "D": "K_msle", "state": "state_f1"}
    for key, name in names.items():
        assert ours[name] == pytest.approx(float(official[f"tr2.ta1.{key}"]), rel=1e-9, abs=1e-12), name
    assert ours["ens_alpha_w1"] == pytest.approx(float(official["tr2.ta2.alpha"]), rel=1e-9)
    assert ours["ens_K_w1"] == pytest.approx(float(official["tr2.ta2.D"]), rel=1e-9)
    assert 0 < ours["alpha_mae"] < 0.5 and ours["state_f1"] > 0.5  # an imperfect but sane method


def test_run_writes_a_line_for_every_trajectory_and_counts_fallbacks(dataset, tmp_path):
    ref, public = dataset
    from andi_datasets.utils_challenge import load_file_to_df

    fov1 = af.read_andi_csv(public / "track_2" / "exp_0" / "trajs_fov_1.csv")

    def fails_on_second_fov(traj):
        alone = traj.n_tracks and "fov" not in traj.tracks
        if not alone and traj.n_tracks == fov1.n_tracks + \
                af.read_andi_csv(public / "track_2" / "exp_0" / "trajs_fov_0.csv").n_tracks:
            raise RuntimeError("cannot handle this field of view")  # exp 0's FOVs together
        if alone and traj.tracks["particle"].tolist() == fov1.tracks["particle"].tolist() and \
                np.array_equal(traj.points["x"], fov1.points["x"]):
            raise RuntimeError("cannot handle this field of view")
        labels = baselines.classical(traj)
        return labels[1:]  # the first trajectory is left to the fallback

    # batch_tracks=1: exp 0's two FOVs in one call (an experiment is never split), exp 1 in another;
    # the failed call is retried FOV by FOV, so the failure stays within FOV 1
    summary = submission.run_public(public, tmp_path / "sub", fails_on_second_fov, tracks=[2], progress=False,
                                    batch_tracks=1)
    assert summary.counts["fallback"][2] == fov1.n_tracks + 2  # FOV 1 of exp 0, one trajectory of each other FOV
    assert len(summary.failed) == 1 and "cannot handle" in list(summary.failed.values())[0]
    for exp, fov in [(0, 0), (0, 1), (1, 0)]:
        trajs = af.read_andi_csv(public / "track_2" / f"exp_{exp}" / f"trajs_fov_{fov}.csv")
        df = load_file_to_df(af.submission_path(tmp_path / "sub", 2, exp, fov))  # the official parser
        assert sorted(df.traj_idx.astype(int)) == sorted(trajs.tracks["particle"].tolist())
        assert [cp[-1] for cp in df.changepoints] == [float(n) for n in trajs.lengths]
    assert scoring.score(tmp_path / "sub", ref, tracks=[2], ensemble=False).complete


def test_batched_fields_of_view_give_the_same_lines_as_one_by_one(dataset, tmp_path):
    _, public = dataset
    submission.run_public(public, tmp_path / "one", baselines.classical, tracks=[2], progress=False, batch_tracks=1)
    submission.run_public(public, tmp_path / "all", baselines.classical, tracks=[2], progress=False)  # one call
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.txt"))
    assert len(files) == 5  # 3 FOV files + 2 ensembles
    for f in files:
        assert (tmp_path / "one" / f).read_text() == (tmp_path / "all" / f).read_text(), f


def test_track1_run_writes_exactly_the_vip_indices(tmp_path):
    """Videos tracked by trackpy (anomalousnet.tracking): the submission holds one line per VIP
    index, in the official format, and scores against a reference built from the video's truth."""
    from andi_datasets.utils_challenge import load_file_to_df

    from anomalousnet.simulation.synthetic_video import SyntheticVideo

    public, ref = tmp_path / "public", tmp_path / "ref"
    video = SyntheticVideo(n_frames=60, shape=(64, 64), n_particles=6, D=0.2, seed=4)
    exp_dir = public / "track_1" / "exp_0"
    exp_dir.mkdir(parents=True)
    truth = video.write(exp_dir / "videos_fov_0.tiff", vips=3, layout="andi")
    vips = [0, 2, 1, 5]  # 5 has no label mark in the video: tracking cannot find it
    af.write_vip_idx(exp_dir / "vip_idx_fov_0.txt", vips)
    summary = submission.run_public(public, tmp_path / "sub", baselines.classical, tracks=[1], tracker=methods.default_tracker(),
                              progress=False)
    df = load_file_to_df(tmp_path / "sub" / "track_1" / "exp_0" / "fov_0.txt")
    assert sorted(df.traj_idx.astype(int)) == sorted(vips)
    assert summary.counts["fallback_reasons"] == {"not found by tracking": 1}
    # reference from the truth: Brownian, alpha 1, K = D, state free, whole video
    labels = [af.TrajectoryLabel(int(p), (0.2,), (1.0,), (2,), (), 60) for p in sorted(truth.particle.unique())]
    af.write_labels(ref / "track_1" / "exp_0" / "traj_labs_fov_0.txt", labels)
    af.write_vip_idx(ref / "track_1" / "exp_0" / "vip_idx_fov_0.txt", vips)
    report = scoring.score(tmp_path / "sub", ref, tracks=[1], ensemble=False)
    assert report.complete and report.overall(1)["n_scored"] == 4
    lines = {l.idx: l for l in af.read_labels(tmp_path / "sub" / "track_1" / "exp_0" / "fov_0.txt")[0]}
    assert all(lines[v].T == 60 for v in (0, 1, 2))  # tracked over the whole video
    assert all(abs(np.log(k / 0.2)) < np.log(2) for v in (0, 1, 2) for k in lines[v].K)


def test_cli_run_then_score(dataset, tmp_path):
    ref, public = dataset
    out = subprocess.run([*CLI, "andi", "run", "--public", str(public), "--out", str(tmp_path / "sub"), "--tracks", "2",
                          "--method", "naive"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "track 2:" in out.stdout and "0 fallback" in out.stdout
    out = subprocess.run([*CLI, "andi", "score", "--sub", str(tmp_path / "sub"), "--ref", str(ref), "--tracks", "2",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import json

    report = json.loads(out.stdout)
    assert report["complete"] and report["tracks"]["2"]["overall"]["n_scored"] > 0
    assert [e["exp"] for e in report["tracks"]["2"]["experiments"]] == [0, 1]
    out = subprocess.run([*CLI, "andi", "run", "--public", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s2")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "nowhere" in out.stderr


def test_model_method_writes_a_complete_submission(dataset, tmp_path):
    """The AnomalousNet pipeline (built-in model + change points) through `andi run`: every
    trajectory gets a line, the official parser reads it, and it scores."""
    ref, public = dataset
    out = subprocess.run([*CLI, "andi", "run", "--public", str(public), "--out", str(tmp_path / "sub"), "--tracks", "2",
                          "--method", "model"], capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    report = scoring.score(tmp_path / "sub", ref, tracks=[2], ensemble=False)
    assert report.complete, [str(p) for p in report.problems]
    overall = report.overall(2)
    assert overall["n_scored"] == overall["n_expected"] > 0
    assert overall["alpha_mae"] < 0.5 and overall["state_f1"] > 0.5


def test_benchmark_scores_methods_side_by_side(tmp_path):
    from anomalousnet.andi import benchmark as bm

    options = bm.BenchmarkOptions(quick=True, seed=1, fovs=1, methods=("classical", "naive"))
    result = bm.run_benchmark(tmp_path, options, progress=False)
    assert set(result["runs"]) == {"andi", "directed"}
    andi_runs = result["runs"]["andi"]
    assert [e["model"] for e in andi_runs["naive"]["score"]["tracks"]["2"]["experiments"]] == \
        ["single_state", "multi_state", "immobile_traps", "dimerization", "confinement"]
    classical = andi_runs["classical"]["score"]["tracks"]["2"]["overall"]
    naive = andi_runs["naive"]["score"]["tracks"]["2"]["overall"]
    assert classical["K_msle"] < naive["K_msle"] and classical["ens_K_w1"] < naive["ens_K_w1"]
    directed = result["runs"]["directed"]["classical"]["score"]["tracks"]["2"]["state_recall"]["directed"]
    assert directed["frames"] > 0 and directed["recall"] > 0.3  # directed motion is in the data and found
    assert result["runs"]["directed"]["naive"]["score"]["tracks"]["2"]["state_recall"]["directed"]["recall"] == 0
    assert result["throughput"]["classical"]["track2_trajectories_per_s"] > 0
    text = bm.format_report(result)
    assert "andi        2 classical" in text and "directed" in text and "not measured" in text
    assert (tmp_path / "benchmark.json").exists()
    again = bm.make_datasets(tmp_path / "data", options, progress=False)  # reused, not simulated again
    assert again["andi"] == Path(result["datasets"]["andi"])


def test_track1_vip_picked_up_late_keeps_the_reference_time_axis(tmp_path):
    """A VIP track that starts at frame 3 (missed by the tracker in frames 0-2) is written with
    its change points and length counted from frame 0, where every VIP starts."""
    exp_dir = tmp_path / "public" / "track_1" / "exp_0"
    exp_dir.mkdir(parents=True)
    (exp_dir / "videos_fov_0.tiff").write_bytes(b"")  # the tracker below does not read it
    af.write_vip_idx(exp_dir / "vip_idx_fov_0.txt", [0, 1])
    rng = np.random.default_rng(0)
    tracked = st.Trajectories.from_arrays(
        [{"frame": np.arange(3, 53), "x": rng.normal(size=50).cumsum(), "y": rng.normal(size=50).cumsum()},
         {"frame": np.arange(0, 40), "x": rng.normal(size=40).cumsum(), "y": rng.normal(size=40).cumsum()}],
        {"particle": np.array([7, 8]), "vip": np.array([1, -1])})

    def method(traj):
        return [af.TrajectoryLabel(int(p), (1.0, 0.1), (1.0, 0.5), (2, 1), (10,), int(n))
                for p, n in zip(traj.tracks["particle"], traj.lengths)]

    summary = submission.run_public(tmp_path / "public", tmp_path / "sub", method, tracks=[1], tracker=lambda video: tracked,
                              progress=False)
    lines = {l.idx: l for l in af.read_labels(tmp_path / "sub" / "track_1" / "exp_0" / "fov_0.txt")[0]}
    assert sorted(lines) == [0, 1] and summary.counts["fallback_reasons"] == {"not found by tracking": 1}
    assert lines[1].cps == (13,) and lines[1].T == 53 and lines[1].alpha == (1.0, 0.5)


def test_cli_run_names_an_untrackable_video_and_still_writes_every_vip(tmp_path):
    exp_dir = tmp_path / "public" / "track_1" / "exp_0"
    exp_dir.mkdir(parents=True)
    (exp_dir / "videos_fov_0.tiff").write_bytes(b"not a tiff")
    af.write_vip_idx(exp_dir / "vip_idx_fov_0.txt", [0, 1, 2])
    out = subprocess.run([*CLI, "andi", "run", "--public", str(tmp_path / "public"), "--out", str(tmp_path / "sub"),
                          "--tracks", "1", "--method", "naive", "--workers", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "videos_fov_0.tiff" in out.stderr and "3 fallback" in out.stdout
    lines = af.read_labels(tmp_path / "sub" / "track_1" / "exp_0" / "fov_0.txt")[0]
    assert [l.idx for l in lines] == [0, 1, 2] and all(l.T == 200 for l in lines)  # the challenge's T


def test_goal_table_has_state_recall_and_per_model_f1_beside_the_naive_baseline():
    from anomalousnet.andi import benchmark as bm

    def run(f1, recall, per_model):
        states = {"immobile": None, "confined": recall[0], "free": recall[1], "directed": None}
        return {"fallback": {"2": 0}, "score": {"tracks": {"2": {
            "overall": {"state_f1": f1},
            "state_recall": {k: {"frames": 0 if v is None else 100, "recall": v} for k, v in states.items()},
            "experiments": [{"exp": i, "model": m, "state_f1": v, "alpha_mae": v / 10}
                            for i, (m, v) in enumerate(per_model)]}}}}

    result = {"runs": {"andi": {
        "model": run(0.93, (0.85, 0.96), [("multi_state", 0.90), ("confinement", 0.95), ("confinement", 0.97),
                                          ("single_state", 0.45)]),
        "classical": run(0.9, (0.0, 1.0), [("single_state", 0.6)]),
        "naive": run(0.906, (0.0, 1.0), [("multi_state", 0.91), ("confinement", 0.88), ("confinement", 0.88),
                                         ("single_state", 1.0)])}}}
    rows = {g["metric"]: g for g in bm.goal_status(result)}
    assert rows["state_f1_vs_naive"]["met"] is True and rows["state_f1_vs_naive"]["beside"] == 0.906
    assert rows["confined_recall"]["met"] is True and rows["confined_recall"]["beside"] == 0.0
    assert rows["free_recall"]["met"] is False and rows["free_recall"]["beside"] == 1.0
    assert rows["state_f1 multi_state"]["met"] is False and rows["state_f1 multi_state"]["beside"] == 0.91
    assert rows["state_f1 confinement"]["value"] == pytest.approx(0.96) and rows["state_f1 confinement"]["met"]
    text = bm.format_report({**result, "throughput": {}, "goals": bm.goal_status(result)})
    assert "state_f1 multi_state" in text and "(naive 0.91)" in text
    single = rows["alpha_mae single_state"]  # the paper's first check, beside the classical baseline
    assert single["value"] == pytest.approx(0.045) and single["met"] and single["beside"] == pytest.approx(0.06)
    assert "(classical 0.06)" in text
