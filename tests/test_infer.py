"""The main job end to end with the built-in model: CSVs and videos in, a results store that
validates, segments that cover every trajectory exactly, resume, bad inputs named and skipped."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalousnet.segments import segmentation as cp
from anomalousnet import ensemble as ens
from anomalousnet.batch import pipeline
from anomalousnet.batch.inputs import expand_inputs
from anomalousnet.io.atomic import tmp_path_for
from anomalousnet.io import store as st
from anomalousnet.io import andi_files as tio
from anomalousnet.segments.crops import crop_rows
from anomalousnet.segments.segmentation import SegmentOptions

MODEL = "default"


def csv_fov(path, n, seed):
    """An AnDi-style CSV of ``n`` simulated trajectories (andi-datasets models)."""
    from anomalousnet.simulation.training_store import simulate_tracks

    traj, _ = simulate_tracks(n, seed=seed)
    plain = st.Trajectories(traj.offsets, {c: traj.points[c] for c in ("frame", "x", "y")},
                            {"particle": traj.tracks["particle"]})
    tio.write_andi_csv(path, plain)
    return plain


def check_results(out, expected_fovs, bundle_sha):
    index = st.validate_store(out / "store")
    assert index.kind == "results" and len(index.shard_names) == expected_fovs
    n_segments = 0
    for shard in st.iter_shards(out / "store"):
        traj, seg = shard.trajectories, shard.tables["segments"]
        cp.check_coverage(seg, traj)  # contiguous, from 0 to each track's length, no gaps or overlaps
        assert set(seg["particle"].tolist()) == set(traj.tracks["particle"].tolist())
        assert traj.points["pred_alpha"].dtype == np.float32 and traj.points["pred_state"].dtype == np.int8
        assert np.all(np.isfinite(traj.points["pred_alpha"])) and np.all(traj.points["pred_K"] >= 0)
        assert set(np.unique(traj.points["pred_state"])) <= {0, 1, 2, 3}
        assert shard.attrs["model_sha256"] == bundle_sha
        assert json.loads(shard.attrs["parameters"])["model_sha256"] == bundle_sha
        e = shard.tables["ensemble"]
        assert e["weight"].sum() == pytest.approx(1.0)
        counted = seg["in_ensemble"] & (seg["track_length"] >= 10) & ~seg["fallback"]
        assert e["n_frames"].sum() == (seg["end"] - seg["start"])[counted].sum()  # fallback and short: not counted
        assert np.all(seg["track_length"] == traj.lengths[np.searchsorted(traj.tracks["particle"], seg["particle"])])
        n_segments += len(seg["start"])
    table = pd.read_csv(out / "segments.csv")
    assert len(table) == n_segments
    zones = pd.read_csv(out / "zones.csv")
    for shard in st.iter_shards(out / "store"):
        rows = zones[zones["fov"] == shard.path.stem]
        assert len(rows) == len(shard.tables["zones"]["x"])
        assert np.allclose(rows["radius"].to_numpy(float), shard.tables["zones"]["radius"])
        assert set(rows["kind"]) <= {"confinement", "trap"}
    ensemble = pd.read_csv(out / "ensemble.csv")
    for shard in st.iter_shards(out / "store"):  # the CSVs hold the shards' tables, column by column
        rows = ensemble[ensemble["fov"] == shard.path.stem]
        for column, values in shard.tables["ensemble"].items():
            assert np.allclose(rows[column].to_numpy(), values), column
        rows = table[table["fov"] == shard.path.stem]
        for column, values in shard.tables["segments"].items():  # NaN singles: brief episodes
            assert np.allclose(rows[column].to_numpy(float), values, equal_nan=True), column
    return table


@pytest.fixture(scope="module")
def bundle():
    from anomalousnet.networks.bundle import load_bundle

    return load_bundle(MODEL)


def test_csv_inputs_end_to_end_resume_and_bad_files(tmp_path, bundle):
    data = tmp_path / "data"
    a = csv_fov(data / "exp_0" / "trajs_fov_0.csv", 25, seed=1)
    csv_fov(data / "exp_1" / "trajs_fov_0.csv", 15, seed=2)  # same file name, other experiment
    (data / "broken.csv").write_text("traj_idx,frame,x,y\n0,0,1.0,2.0\n0,2,1.5,2.5\n")  # frame 1 missing
    out = tmp_path / "results"
    options = pipeline.InferOptions(model=MODEL, workers=1, pixel_size_um=0.16, frame_interval_s=0.1,
                                    progress=False)
    summary = pipeline.run_infer([str(data / "exp_*" / "*.csv"), str(data / "broken.csv"),
                                  str(data / "absent.csv")], out, options)
    assert len(summary.written) == 2 and not summary.kept
    assert set(summary.failed) == {str(data / "broken.csv"), str(data / "absent.csv")}
    assert "trajectory 0: frame 1 missing" in summary.failed[str(data / "broken.csv")]
    table = check_results(out, 2, bundle.sha256)
    # K in physical units: um^2/s^alpha = K px^2/frame^alpha * px_size^2 / dt^alpha
    expected = table["K"] * 0.16 ** 2 / 0.1 ** table["alpha"]
    assert np.allclose(table["K_um2_per_s_alpha"], expected, rtol=1e-5)
    # ensemble.csv too: frame-weighted over each state's segments of the FOV (their own values,
    # before pooling), in um^2/s^alpha
    ensemble = pd.read_csv(out / "ensemble.csv")
    assert not np.allclose(table["alpha_single"], table["alpha"])  # pooled
    for (fov, state), rows in table.groupby(["fov", "state"]):
        measured = rows["K_single"].notna()  # brief episodes have no values of their own
        rows = rows[measured] if measured.any() else rows.assign(K_single=rows["K"], alpha_single=rows["alpha"])
        frames = rows["end"] - rows["start"]
        e = ensemble[(ensemble["fov"] == fov) & (ensemble["state"] == state)]
        own = rows["K_single"] * 0.16 ** 2 / 0.1 ** rows["alpha_single"]
        assert e["K_mean_um2_per_s_alpha"].item() == pytest.approx(np.average(own, weights=frames), rel=1e-5)
        assert e["state_name"].item() == rows["state_name"].iloc[0]
    assert set(table["source"]) == {str(data / "exp_0" / "trajs_fov_0.csv"), str(data / "exp_1" / "trajs_fov_0.csv")}
    one = table[table["source"] == str(data / "exp_0" / "trajs_fov_0.csv")]
    assert one.groupby("particle")["end"].max().to_dict() == dict(zip(a.tracks["particle"].tolist(),
                                                                          a.lengths.tolist()))
    ensemble_files = sorted((out / "ensemble").glob("*.txt"))
    assert len(ensemble_files) == 2
    matrix = np.loadtxt(ensemble_files[0], skiprows=1, delimiter=";", ndmin=2)
    assert matrix.shape[0] == 5 and matrix[4].sum() == pytest.approx(1.0)
    assert json.loads((out / "summary.json").read_text())["failed"] == summary.failed
    assert summary.info["device"].startswith("tensorflow: ") and {"predict", "segment", "write"} <= set(summary.seconds)

    # Re-run: complete shards are kept untouched; a lost shard (crash) is redone alone.
    shards = sorted((out / "store").glob("*.h5"))
    shards = [p for p in shards if p.name != st.INDEX_NAME]
    mtimes = {p: p.stat().st_mtime_ns for p in shards}
    shards[0].unlink()
    tmp_path_for(shards[0]).write_bytes(b"half a shard")  # what a crash mid-write leaves
    again = pipeline.run_infer([str(data / "exp_*" / "*.csv")], out, options)
    assert again.written == [shards[0]] and again.kept == [shards[1]] and not again.failed
    assert shards[1].stat().st_mtime_ns == mtimes[shards[1]]
    assert not tmp_path_for(shards[0]).exists()
    check_results(out, 2, bundle.sha256)
    # An input that changed since is redone; other parameters redo everything.
    changed = csv_fov(data / "exp_1" / "trajs_fov_0.csv", 9, seed=4)
    third = pipeline.run_infer([str(data / "exp_*" / "*.csv")], out, options)
    assert len(third.written) == 1 and len(third.kept) == 1
    redone = st.read_shard(third.written[0])
    assert redone.trajectories.n_tracks == changed.n_tracks
    other = pipeline.InferOptions(model=MODEL, workers=1, segment=cp.SegmentOptions(penalty=20.0), progress=False)
    assert len(pipeline.run_infer([str(data / "exp_*" / "*.csv")], out, other).written) == 2


def test_video_inputs_are_tracked_then_analysed(tmp_path, bundle):
    from anomalousnet.simulation.synthetic_video import SyntheticVideo

    videos = tmp_path / "videos"
    videos.mkdir()
    for seed in (0, 1):
        SyntheticVideo(n_frames=60, shape=(64, 64), n_particles=6, D=0.3, seed=seed).write(videos / f"v{seed}.tif")
    (videos / "corrupt.tif").write_bytes(b"II*\x00 this is not a TIFF")
    out = tmp_path / "results"
    summary = pipeline.run_infer([str(videos / "*.tif")], out, pipeline.InferOptions(
        model=MODEL, workers=1, report=True, progress=False))
    assert list(summary.failed) == [str(videos / "corrupt.tif")]
    assert len(summary.written) == 2
    table = check_results(out, 2, bundle.sha256)
    assert len(set(table["particle"])) >= 4
    assert "K_um2_per_s_alpha" not in table  # no pixel size / frame interval given
    assert st.validate_store(out / "tracks").kind == "trajectories"
    for shard in st.iter_shards(out / "store"):
        assert shard.attrs["source_path"].endswith(".tif") and shard.attrs["tracks_path"]
        assert "vip" in shard.trajectories.tracks and "interpolated" in shard.trajectories.points
    assert len(summary.info["figures"]) == 2
    assert all(p.stat().st_size > 10_000 and p.read_bytes()[:4] == b"\x89PNG" for p in summary.info["figures"])


def test_cli_exit_status_and_segment_command(tmp_path):
    csv_fov(tmp_path / "trajs_fov_0.csv", 12, seed=3)
    out = tmp_path / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-m", "anomalousnet_cli", "infer", "--input", str(tmp_path / "*.csv"),
                          str(tmp_path / "missing.csv"), "--out", str(out), "--model", MODEL, "--workers", "1"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1, run.stderr
    assert f"FAILED {tmp_path / 'missing.csv'}: no such file" in run.stderr
    assert f"segments: {out / 'segments.csv'}" in run.stdout
    assert "cuDNN factory" not in run.stderr and "cuInit" not in run.stderr  # TensorFlow's start-up lines
    before = pd.read_csv(out / "segments.csv")
    seg = subprocess.run([sys.executable, "-m", "anomalousnet_cli", "segment", str(out),  # the results folder
                          "--penalty", "1000", "--episode-llr", "0", "--pixel-size", "0.1"], capture_output=True,
                         text=True, timeout=300, env=env)
    assert seg.returncode == 0, seg.stderr
    assert "warning: --pixel-size without --frame-interval: K stays in px^2/frame^alpha" in seg.stderr
    after = pd.read_csv(out / "segments.csv")
    assert len(after) == 12 and len(before) >= 12  # a huge penalty, no episodes: one segment per track
    for shard in st.iter_shards(out / "store"):
        cp.check_coverage(shard.tables["segments"], shard.trajectories)
        assert json.loads(shard.attrs["parameters"])["segment"]["penalty"] == 1000


def test_segment_on_a_store_reproduces_infer_with_the_crop_pass_of_its_model(tmp_path, caplog):
    csv_fov(tmp_path / "trajs_fov_0.csv", 30, seed=8)
    out = tmp_path / "results"
    pipeline.run_infer([str(tmp_path / "trajs_fov_0.csv")], out, pipeline.InferOptions(model=MODEL, workers=1,
                                                                                     progress=False))
    infer_segments = pd.read_csv(out / "segments.csv")
    assert len(crop_rows(infer_segments, SegmentOptions().crop_min_frames)) > 0  # the crop pass has work here
    pipeline.segment_store(out / "store", SegmentOptions(), progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(out / "segments.csv"), infer_segments)
    pipeline.segment_store(out / "store", SegmentOptions(crop_min_frames=None), progress=False)
    whole = pd.read_csv(out / "segments.csv")
    assert not np.allclose(whole["alpha_single"], infer_segments["alpha_single"])
    # a store whose model changed since: whole-track values, and a warning naming the shard
    shard = next(iter(st.iter_shards(out / "store")))
    st.write_shard(shard.path, shard.trajectories, kind=shard.attrs["kind"],
                   attrs={**shard.attrs, "model_sha256": "0" * 64}, tables=shard.tables)
    with caplog.at_level("WARNING"):
        pipeline.segment_store(out / "store", SegmentOptions(), progress=False)
    assert str(shard.path) in caplog.text and "gone or changed" in caplog.text
    pd.testing.assert_frame_equal(pd.read_csv(out / "segments.csv"), whole)


def test_a_run_where_every_input_fails_says_so_and_keeps_earlier_results(tmp_path):
    csv_fov(tmp_path / "trajs_fov_0.csv", 6, seed=4)
    out = tmp_path / "results"
    pipeline.run_infer([str(tmp_path / "trajs_fov_0.csv")], out, pipeline.InferOptions(model=MODEL, workers=1))
    before = (out / "segments.csv").read_bytes()
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for target in (out, tmp_path / "fresh"):
        run = subprocess.run([sys.executable, "-m", "anomalousnet_cli", "infer", "--input", str(tmp_path / "bad.csv"),
                              str(tmp_path / "none*.tif"), "--out", str(target), "--workers", "1"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 1 and "no results: 2 input(s) given, every one failed" in run.stderr, run.stderr
        assert f"FAILED {tmp_path / 'bad.csv'}" in run.stderr and "segments:" not in run.stdout
    assert (out / "segments.csv").read_bytes() == before
    assert not (tmp_path / "fresh" / "segments.csv").exists()


def test_short_and_fallback_tracks_are_flagged_and_kept_out_of_the_ensemble(tmp_path):
    rng = np.random.default_rng(6)
    rows = [(p, f, x, y) for p, n in ((0, 2), (1, 3), (2, 60), (3, 60))
            for f, x, y in zip(range(n), rng.normal(0, 1, n).cumsum(), rng.normal(0, 1, n).cumsum())]
    pd.DataFrame(rows, columns=["traj_idx", "frame", "x", "y"]).to_csv(tmp_path / "fov.csv", index=False)
    out = tmp_path / "results"
    pipeline.run_infer([str(tmp_path / "fov.csv")], out, pipeline.InferOptions(model=MODEL, workers=1, progress=False))
    table = pd.read_csv(out / "segments.csv").set_index("particle")
    assert table.loc[0, "fallback"] and table.loc[0, "track_length"] == 2 and not table.loc[0, "in_ensemble"]
    assert not table.loc[1, "fallback"] and table.loc[1, "track_length"] == 3 and not table.loc[1, "in_ensemble"]
    assert table.loc[[2, 3], "in_ensemble"].all() and (table["filled_share"] == 0).all()
    ensemble = pd.read_csv(out / "ensemble.csv")
    assert ensemble["n_frames"].sum() == 120  # the two long tracks only
    pipeline.run_infer([str(tmp_path / "fov.csv")], tmp_path / "all",
                       pipeline.InferOptions(model=MODEL, workers=1, progress=False, min_length=1))
    assert pd.read_csv(tmp_path / "all" / "ensemble.csv")["n_frames"].sum() == 123  # asked: short ones too


def test_merge_refuses_a_folder_without_tables_or_with_other_columns_and_writes_nothing(tmp_path):
    from anomalousnet.batch.merge import MergeError, merge_results

    for name, header in (("a", "x,y\n1,2\n"), ("b", "x,y\n3,4\n"), ("c", "x,z\n5,6\n")):
        (tmp_path / name).mkdir()
        for table in ("segments.csv", "ensemble.csv"):
            (tmp_path / name / table).write_text(header)
    (tmp_path / "d").mkdir()
    with pytest.raises(MergeError, match=r"c/segments\.csv: columns differ"):
        merge_results([tmp_path / "a", tmp_path / "c"], tmp_path / "out")
    with pytest.raises(MergeError, match=r"d/segments\.csv: missing"):
        merge_results([tmp_path / "a", tmp_path / "d"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert (tmp_path / "out" / "segments.csv").read_text() == "x,y\n1,2\n3,4\n"
    assert not (tmp_path / "out" / "zones.csv").exists()  # no folder has one (results of an earlier version)
    (tmp_path / "a" / "zones.csv").write_text("zone,x\n0,1.5\n")
    with pytest.raises(MergeError, match=r"b/zones\.csv: missing"):
        merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    (tmp_path / "b" / "zones.csv").write_text("zone,x\n0,2.5\n")
    merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert (tmp_path / "out" / "zones.csv").read_text() == "zone,x\n0,1.5\n0,2.5\n"


def test_figures_never_outlive_the_segments_they_show(tmp_path):
    csv_fov(tmp_path / "trajs_fov_0.csv", 6, seed=5)
    out = tmp_path / "results"
    pipeline.run_infer([str(tmp_path / "trajs_fov_0.csv")], out,
                       pipeline.InferOptions(model=MODEL, workers=1, report=True, progress=False))
    (png,) = sorted((out / "figures").glob("*.png"))
    store = out / "store"
    pipeline.segment_store(store, cp.SegmentOptions(penalty=8), progress=False)
    assert not png.exists()  # drawn from the old segments: removed, not left beside new tables
    pipeline.segment_store(store, cp.SegmentOptions(penalty=8), progress=False, report=True)
    assert png.exists() and png.stat().st_mtime >= (store / f"{png.stem}.h5").stat().st_mtime


def test_segment_command_rejects_a_store_without_predictions(tmp_path):
    traj = st.Trajectories.from_arrays([{"x": np.arange(5.0), "y": np.zeros(5)}])
    st.write_shard(tmp_path / "s.h5", traj)
    st.write_index(tmp_path, "trajectories")
    with pytest.raises(st.StoreError, match="no predictions"):
        pipeline.segment_store(tmp_path, progress=False)


@pytest.mark.parametrize("text,problem", [
    ("a,b\n1,2\n", "missing column(s) traj_idx, frame, x, y; found a, b. Accepted names: traj_idx: traj_idx or "
                    "particle or TRACK_ID; frame: frame or FRAME; x: x or POSITION_X; y: y or POSITION_Y; or name "
                    "them with --columns"),
    ("traj_idx,frame,x,y\n", "no rows"),
    ("traj_idx,frame,x,y\n0,0,1.0,nan\n", "row 2: column y is"),
    ("traj_idx,frame,x,y\n0,0.5,1.0,2.0\n", "row 2: frame 0.5 is not an integer"),
    ("traj_idx,frame,x,y\n0,0,1,2\n0,1,1,2\n0,1,1,2\n", "trajectory 0: frame 1 given twice"),
    ("traj_idx,frame,x,y\n3,0,1,2\n3,1,1,2\n3,4,1,2\n", "trajectory 3: frame 2 missing (jumps from 1 to 4)"),
    (b"\xff\xfe\x00binary", "not a readable CSV"),
])
def test_csv_reader_names_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "t.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(tio.TrajectoryFileError) as err:
        tio.read_andi_csv(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def trackmate_csv(path, n_tracks=3, frames=40, seed=0):
    """A TrackMate spot export: feature header, then name, short-name and unit rows, then
    spots (one in no track)."""
    rng = np.random.default_rng(seed)
    lines = ["LABEL,ID,TRACK_ID,QUALITY,POSITION_X,POSITION_Y,POSITION_T,FRAME,MEAN_INTENSITY_CH1",
             "Label,Spot ID,Track ID,Quality,X,Y,T,Frame,Mean intensity ch1",
             "Label,Spot ID,Track ID,Quality,X,Y,T,Frame,Mean ch1",
             ",,,(quality),(pixel),(pixel),(sec),,(counts)"]
    for track in range(n_tracks):
        x, y = rng.normal(0, 1, frames).cumsum() + 50, rng.normal(0, 1, frames).cumsum() + 50
        lines += [f"ID{track * 1000 + f},{track * 1000 + f},{track},7.5,{x[f]},{y[f]},{f * 0.05},{f},{100 + f}"
                  for f in range(frames)]
    lines.append("ID9999,9999,,7.5,1.0,1.0,0.1,2,100")
    path.write_text("\n".join(lines) + "\n")


def test_trackmate_and_trackpy_exports_are_read_with_their_extra_columns(tmp_path):
    trackmate_csv(tmp_path / "tm.csv")
    t = tio.read_andi_csv(tmp_path / "tm.csv")
    assert t.n_tracks == 3 and t.n_points == 120  # header rows and the spot in no track skipped
    assert t.points["MEAN_INTENSITY_CH1"][:3].tolist() == [100, 101, 102]
    table = t.to_dataframe().rename(columns={"particle": "TID", "frame": "T", "x": "X", "y": "Y"})
    table.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(tio.TrajectoryFileError, match="missing column"):
        tio.read_andi_csv(tmp_path / "other.csv")
    mapped = tio.read_andi_csv(tmp_path / "other.csv", columns=tio.parse_column_map("particle=TID,frame=T,x=X,y=Y"))
    np.testing.assert_allclose(mapped.points["x"], t.points["x"])
    with pytest.raises(ValueError, match="NAME one of particle, frame, x, y"):
        tio.parse_column_map("track=TID")
    out = tmp_path / "results"
    pipeline.run_infer([str(tmp_path / "tm.csv")], out, pipeline.InferOptions(model=MODEL, workers=1, progress=False))
    (shard,) = st.iter_shards(out / "store")  # the input's columns survive into the results store
    assert {"QUALITY", "MEAN_INTENSITY_CH1", "pred_alpha"} <= set(shard.trajectories.points)


def test_csv_reader_sorts_rows_and_reads_andi_floats(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("traj_idx,frame,x,y\n1.0,5.0,0.5,0.25\n0.0,1.0,3,4\n1.0,4.0,0.0,0.0\n0.0,0.0,1,2\n")
    traj = tio.read_andi_csv(path)
    assert traj.tracks["particle"].tolist() == [0, 1]
    assert traj.points["frame"].tolist() == [0, 1, 4, 5] and traj.points["x"].tolist() == [1, 3, 0, 0.5]
    tio.write_andi_csv(tmp_path / "back.csv", traj)
    again = tio.read_andi_csv(tmp_path / "back.csv")
    assert np.array_equal(again.points["y"], traj.points["y"]) and again.offsets.tolist() == [0, 2, 4]


def test_ensemble_is_frame_weighted_per_state(tmp_path):
    seg = {"start": np.array([0, 10, 0, 0]), "end": np.array([10, 40, 20, 5]),
           "alpha": np.array([0.5, 1.0, 0.7, 0.0]), "K": np.array([1.0, 2.0, 3.0, 0.0]),
           "state": np.array([2, 2, 1, 0])}
    e = ens.fov_ensemble(seg, noise=None)
    assert e["state"].tolist() == [0, 1, 2]
    assert e["weight"].tolist() == pytest.approx([5 / 65, 20 / 65, 40 / 65])
    assert e["alpha_mean"][2] == pytest.approx(0.25 * 0.5 + 0.75 * 1.0)
    assert e["alpha_var"][2] == pytest.approx(0.25 * 0.375 ** 2 + 0.75 * 0.125 ** 2)
    assert e["K_mean"][2] == pytest.approx(1.75) and e["K_var"][1] == 0.0
    text = tio.write_ensemble(tmp_path / "e.txt", tio.EnsembleLabel("multi_state", ens.andi_matrix(e))).read_text()
    assert text.splitlines()[0] == "model: multi_state; num_state: 3 "
    assert np.allclose(np.loadtxt(text.splitlines()[1:], delimiter=";"), ens.andi_matrix(e))


def test_ensemble_variances_are_the_particles_not_the_measurement():
    rng = np.random.default_rng(3)
    n = np.repeat([40, 200], 2000)  # segment lengths: error variances 0.01 + 1 / n and 0.001
    true_alpha, true_K = rng.normal(0.8, 0.1, n.size), rng.normal(1.0, 0.1, n.size)
    seg = {"start": np.zeros(n.size, int), "end": n, "alpha": true_alpha + rng.normal(0, np.sqrt(0.01 + 1 / n)),
           "K": true_K * 10 ** rng.normal(0, np.sqrt(0.001), n.size), "state": np.full(n.size, 2)}
    measured = ens.fov_ensemble(seg, noise=None)
    e = ens.fov_ensemble(seg, noise=ens.EnsembleNoise(alpha=(0.01, 1.0), logk=(0.001, 0.0)))
    assert measured["alpha_var"][0] > 0.025 and e["alpha_var"][0] == pytest.approx(0.01, abs=0.003)
    assert measured["K_var"][0] > 0.0145 and e["K_var"][0] == pytest.approx(0.01, abs=0.002)
    assert e["alpha_mean"][0] == pytest.approx(0.8, abs=0.02) and e["K_mean"][0] == pytest.approx(1.0, abs=0.02)
    # more noise than spread: alpha's variance 0, K's a share of the measured one
    e = ens.fov_ensemble(seg, noise=ens.EnsembleNoise(alpha=(1.0, 0.0), logk=(1.0, 0.0), k_floor=0.25))
    assert e["alpha_var"][0] == 0.0 and e["K_var"][0] == pytest.approx(0.25 * measured["K_var"][0])
    # immobile states keep their measured values
    immobile = ens.fov_ensemble({**seg, "state": np.zeros(n.size, int)})
    assert immobile["alpha_var"][0] == pytest.approx(measured["alpha_var"][0])
    assert immobile["K_var"][0] == pytest.approx(measured["K_var"][0])


def test_ensemble_splits_a_small_slow_population_of_one_state():
    # a dimer-like minority (9 % of the frames, K 40x lower) called free like the monomers,
    # whose K pooling made equal
    rng = np.random.default_rng(4)
    K = np.r_[np.full(40, 0.996), 10 ** rng.normal(-1.6, 0.1, 4)]
    seg = {"start": np.zeros(44, int), "end": np.full(44, 100), "alpha": np.r_[np.full(40, 1.0), np.full(4, 0.6)],
           "K": K, "state": np.full(44, 2)}
    groups = ens.split_by_K(seg)
    assert groups.tolist() == [5] * 40 + [4] * 4
    labels = tio.labels_from_segments({"particle": np.arange(44), **seg})
    matrix = ens.ensemble_from_labels(labels).matrix
    assert sorted(matrix[4].tolist()) == pytest.approx([4 / 44, 40 / 44])
    assert sorted(matrix[2].tolist())[0] == pytest.approx(10 ** -1.6, rel=0.3)
    assert ens.split_by_K({c: v[:40] for c, v in seg.items()}).tolist() == [4] * 40  # monomers alone


def test_inputs_are_sorted_by_type_and_unusable_ones_named(tmp_path):
    (tmp_path / "folder").mkdir()
    for name in ("folder/b.tif", "folder/a.csv", "folder/notes.txt", "x.TIFF", "odd.json"):
        (tmp_path / name).write_bytes(b"")
    traj = st.Trajectories.from_arrays([{"x": np.arange(4.0), "y": np.zeros(4)}])
    (tmp_path / "store").mkdir()
    st.write_shard(tmp_path / "store" / "s.h5", traj)
    st.write_index(tmp_path / "store", "trajectories")
    (tmp_path / "empty").mkdir()
    found, failed = expand_inputs([str(tmp_path / "folder"), str(tmp_path / "*.TIFF"),
                                            str(tmp_path / "store"), str(tmp_path / "store" / "s.h5"),
                                            str(tmp_path / "folder" / "a.csv"),  # a duplicate
                                            str(tmp_path / "odd.json"), str(tmp_path / "empty"),
                                            str(tmp_path / "*.nd2")])
    assert found == {"video": [tmp_path / "folder" / "b.tif", tmp_path / "x.TIFF"],
                     "csv": [tmp_path / "folder" / "a.csv"], "store": [tmp_path / "store"],
                     "shard": [tmp_path / "store" / "s.h5"]}
    assert "unknown input type '.json'" in failed[str(tmp_path / "odd.json")]
    assert "no store index" in failed[str(tmp_path / "empty")]
    assert failed[str(tmp_path / "*.nd2")] == "pattern matches no file"


def test_unusable_model_is_a_clear_error_before_anything_is_written(tmp_path):
    from anomalousnet.networks.bundle import BundleError

    with pytest.raises(BundleError, match="not a model bundle"):
        pipeline.run_infer([str(tmp_path)], tmp_path / "results", pipeline.InferOptions(model=str(tmp_path / "no")))
    assert not (tmp_path / "results").exists()


def test_damaged_stray_shard_in_results_is_moved_aside(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    traj = st.Trajectories.from_arrays([{"x": np.arange(4.0), "y": np.zeros(4)}])
    st.write_shard(store / "good.h5", traj, kind="results")
    (store / "stray.h5").write_bytes(b"damaged")
    pipeline._write_index(store, st.provenance("test"))
    assert st.read_index(store).shard_names == ["good.h5"] and (store / "stray.h5.corrupt").exists()


def test_trackpy_csv_with_memory_gaps_is_refused_or_filled_with_fill_gaps(tmp_path):
    rng = np.random.default_rng(4)
    frames = np.r_[0:30, 34:60]  # linked with memory: frames 30-33 missing
    xy = np.cumsum(rng.normal(0, 1, (len(frames), 2)), axis=0)
    pd.DataFrame({"particle": 7, "frame": frames, "x": xy[:, 0], "y": xy[:, 1]}).to_csv(tmp_path / "linked.csv",
                                                                                      index=False)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = [sys.executable, "-m", "anomalousnet_cli", "infer", str(tmp_path / "linked.csv"), "--model", MODEL,
            "--workers", "1"]
    refused = subprocess.run(base + ["--out", str(tmp_path / "r1")], capture_output=True, text=True, timeout=300,
                             env=env)
    assert refused.returncode == 1
    assert "trajectory 7: frame 30 missing (jumps from 29 to 34)" in refused.stderr and "--fill-gaps" in refused.stderr
    filled = subprocess.run(base + ["--out", str(tmp_path / "r2"), "--fill-gaps"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert filled.returncode == 0, filled.stderr
    shard = next(st.iter_shards(tmp_path / "r2" / "store"))
    points = shard.trajectories.points
    assert len(points["frame"]) == 60 and points["interpolated"].sum() == 4
    assert points["frame"][points["interpolated"]].tolist() == [30, 31, 32, 33]


def test_streamed_videos_give_the_tables_of_tracking_first_then_inferring(tmp_path, bundle):
    """`infer` on videos tracks them on the workers while the driver predicts and segments
    those already tracked; the tables equal those of `track` to a store, then `infer` on it."""
    from anomalousnet.simulation.synthetic_video import SyntheticVideo
    from anomalousnet.tracking.batch import track_videos

    videos = tmp_path / "videos"
    videos.mkdir()
    for seed in range(3):
        SyntheticVideo(n_frames=50, shape=(64, 64), n_particles=5, D=0.3, seed=seed).write(videos / f"v{seed}.tif")
    options = pipeline.InferOptions(model=MODEL, workers=2, progress=False)
    streamed = pipeline.run_infer([str(videos / "*.tif")], tmp_path / "streamed", options)
    assert len(streamed.written) == 3 and not streamed.failed
    track_videos([str(videos / "*.tif")], tmp_path / "tracks", workers=2, progress=False)
    pipeline.run_infer([str(tmp_path / "tracks")], tmp_path / "two_steps", options)
    for table in ("segments.csv", "ensemble.csv"):
        a, b = (pd.read_csv(tmp_path / run / table) for run in ("streamed", "two_steps"))
        assert len(a) >= 3
        # the same videos, in the same order (the two-step run names its tracks-store shards)
        assert [f"videos_{Path(p).stem}" for p in a["source"]] == [Path(p).stem.rsplit("-", 1)[0] for p in b["source"]]
        assert all(fb.startswith(f"tracks_{fa}-") for fa, fb in zip(a["fov"], b["fov"]))
        pd.testing.assert_frame_equal(a.drop(columns=["source", "fov"]), b.drop(columns=["source", "fov"]))
