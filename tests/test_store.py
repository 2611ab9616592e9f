"""HDF5 store schema v1: round trips, atomic shards, resume, and rejection of bad files."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from anomalousnet.io import store as st


def ragged(seed=0, lengths=(1, 2, 7, 200, 10_000)):
    rng = np.random.default_rng(seed)
    arrays = []
    for n in lengths:
        first = rng.integers(0, 500)
        arrays.append({
            "frame": np.arange(first, first + n, dtype=np.int64),
            "x": rng.normal(size=n).cumsum() * np.pi,  # full float64 mantissas
            "y": rng.normal(size=n).cumsum() * np.e,
            "alpha": rng.uniform(0, 2, n).astype(np.float32),
            "state": rng.integers(0, 4, n).astype(np.int8),
        })
    tracks = {"particle": np.arange(len(lengths)) * 3 + 1, "model": np.array(["single_state"] * len(lengths))}
    return st.Trajectories.from_arrays(arrays, tracks)


def test_ragged_round_trip_is_bit_exact(tmp_path):
    traj = ragged()
    tables = {"segments": {"particle": np.array([1, 1]), "start": np.array([0, 3]), "alpha": np.array([0.5, 1.5])}}
    st.write_shard(tmp_path / "a.h5", traj, attrs=st.provenance("test", {"n": 5}, units={"x": "px"}), tables=tables)
    shard = st.read_shard(tmp_path / "a.h5")
    back = shard.trajectories
    assert back.lengths.tolist() == [1, 2, 7, 200, 10_000]
    for name, col in traj.points.items():
        assert back.points[name].dtype == col.dtype
        assert back.points[name].tobytes() == col.tobytes(), name
    assert back.tracks["particle"].tolist() == traj.tracks["particle"].tolist()
    assert back.tracks["model"].tolist() == ["single_state"] * 5
    assert shard.tables["segments"]["alpha"].tolist() == [0.5, 1.5]
    assert shard.attrs["schema_version"] == 1 and shard.attrs["command"] == "test"
    assert shard.attrs["package_version"]


def test_dataframe_round_trip_keeps_trackpy_columns(tmp_path):
    traj = ragged(lengths=(3, 5))
    df = traj.to_dataframe()
    assert {"particle", "frame", "x", "y"} <= set(df) and len(df) == 8
    again = st.Trajectories.from_dataframe(df.sample(frac=1, random_state=1))  # order restored by sort
    assert again.offsets.tolist() == traj.offsets.tolist()
    assert np.array_equal(again.points["x"], traj.points["x"])


def test_shard_is_written_under_temporary_name_then_renamed(tmp_path, monkeypatch):
    seen = []
    real_replace = st.os.replace

    def spy(src, dst):
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(st.os, "replace", spy)
    st.write_shard(tmp_path / "s.h5", ragged(lengths=(4,)))
    (src, dst), = seen  # a temporary name of this writer's own (dotted: never read as a shard)
    assert dst == str(tmp_path / "s.h5") and Path(src).name.startswith(".s.h5.") and src.endswith(".tmp")


def test_failed_write_leaves_previous_shard_intact(tmp_path):
    good = ragged(lengths=(5,))
    st.write_shard(tmp_path / "s.h5", good)
    bad = st.Trajectories(good.offsets, {**good.points, "weird": np.array([object()] * 5, dtype=object)}, good.tracks)
    with pytest.raises(Exception):
        st.write_shard(tmp_path / "s.h5", bad)
    assert np.array_equal(st.read_shard(tmp_path / "s.h5").trajectories.points["x"], good.points["x"])
    assert not list(tmp_path.glob(".*tmp"))


def test_truncated_file_is_a_clear_error_naming_the_file(tmp_path):
    st.write_shard(tmp_path / "s.h5", ragged())
    data = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(st.StoreError) as err:
        st.read_shard(tmp_path / "cut.h5")
    assert "cut.h5" in str(err.value)


def test_other_schema_or_version_is_rejected(tmp_path):
    st.write_shard(tmp_path / "s.h5", ragged(lengths=(3,)))
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(st.StoreError, match=r"s\.h5: schema version 2"):
        st.read_shard(tmp_path / "s.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(st.StoreError, match=r"other\.h5: schema is None"):
        st.read_shard(tmp_path / "other.h5")


def test_wrong_shapes_are_rejected(tmp_path):
    st.write_shard(tmp_path / "s.h5", ragged(lengths=(3, 4)))
    with h5py.File(tmp_path / "s.h5", "a") as f:
        del f["points/y"]
        f["points/y"] = np.zeros(6)
    with pytest.raises(st.StoreError, match=r"points/y has shape \(6,\), expected \(7,\)"):
        st.read_shard(tmp_path / "s.h5")
    gappy = st.Trajectories.from_arrays([{"frame": np.array([0, 1, 3]), "x": np.zeros(3), "y": np.zeros(3)}])
    with pytest.raises(st.StoreError, match="one position per frame"):
        st.write_shard(tmp_path / "g.h5", gappy)
    assert not (tmp_path / "g.h5").exists()


def test_training_store_requires_labels(tmp_path):
    traj = st.Trajectories.from_arrays([{"x": np.zeros(3), "y": np.zeros(3)}])
    with pytest.raises(st.StoreError, match="points/alpha is missing"):
        st.write_shard(tmp_path / "t.h5", traj, kind="training")


def test_store_index_lists_whole_shards_and_ignores_temporary_ones(tmp_path, caplog):
    for i in range(3):
        st.write_shard(tmp_path / f"shard-{i:05d}.h5", ragged(seed=i, lengths=(2, 3)))
    (tmp_path / ".shard-00003.h5.tmp").write_bytes(b"half a shard")  # killed mid-write
    st.write_index(tmp_path, "trajectories")
    index = st.validate_store(tmp_path)
    assert index.shard_names == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    assert index.n_tracks.tolist() == [2, 2, 2] and index.n_points.tolist() == [5, 5, 5]
    assert "shard-00003.h5.tmp" in caplog.text and "ignored" in caplog.text
    assert [s.path.name for s in st.iter_shards(tmp_path)] == index.shard_names
    with h5py.File(tmp_path / st.INDEX_NAME) as f:  # external links open the shards
        assert f["shards/shard-00001.h5/tracks/offsets"][-1] == 5


def test_unindexed_or_missing_shard_is_an_error_not_skipped(tmp_path):
    st.write_shard(tmp_path / "a.h5", ragged(lengths=(2,)))
    st.write_index(tmp_path, "trajectories")
    st.write_shard(tmp_path / "b.h5", ragged(lengths=(2,)))
    with pytest.raises(st.StoreError, match=r"b\.h5: complete shard not listed"):
        st.read_index(tmp_path)
    st.write_index(tmp_path, "trajectories")
    (tmp_path / "a.h5").unlink()
    with pytest.raises(st.StoreError, match=r"a\.h5: listed in the index but missing"):
        list(st.iter_shards(tmp_path))


def test_a_results_folder_stands_for_the_store_inside_it(tmp_path):
    st.write_shard(tmp_path / "store" / "a.h5", ragged(lengths=(2,)))
    st.write_index(tmp_path / "store", "trajectories")
    assert st.read_index(tmp_path).path == tmp_path / "store" / st.INDEX_NAME
    from anomalousnet.batch.inputs import expand_inputs

    found, failed = expand_inputs([str(tmp_path)], ("store",))
    assert found["store"] == [tmp_path / "store"] and not failed


def test_resume_keeps_whole_shards_and_moves_damaged_ones_aside(tmp_path):
    st.write_shard(tmp_path / "a.h5", ragged(lengths=(2,)))
    assert st.needs_writing(tmp_path / "a.h5") is False
    assert st.needs_writing(tmp_path / "b.h5") is True
    (tmp_path / "c.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    assert st.needs_writing(tmp_path / "c.h5") is True
    assert (tmp_path / "c.h5.corrupt").read_bytes().endswith(b"truncated")  # kept, not deleted
    assert not (tmp_path / "c.h5").exists()


def test_store_error_survives_pickling_across_processes():
    import pickle

    err = pickle.loads(pickle.dumps(st.StoreError("/data/a.h5", "schema version 2")))
    assert (err.path, err.problem, str(err)) == ("/data/a.h5", "schema version 2", "/data/a.h5: schema version 2")


def _write_many(path, text, n):
    from anomalousnet.io.atomic import write_text

    for _ in range(n):
        write_text(path, text)


def test_two_writers_of_one_file_never_break_each_other(tmp_path):
    """Two runs into one output folder used to share a temporary name: one renamed or removed
    the other's half-written file (FileNotFoundError). Each writer now has its own."""
    import multiprocessing

    target = tmp_path / "summary.json"
    texts = ["a" * 100_000, "b" * 100_000]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(target, t, 300)) for t in texts]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert target.read_text() in texts  # whole, from one writer
    assert not list(tmp_path.glob(".*.tmp"))  # nothing left behind
    (tmp_path / ".summary.json.999999999-dead.tmp").write_text("half")  # a killed writer's leftover
    _write_many(target, "c", 1)
    assert not list(tmp_path.glob(".*.tmp")) and target.read_text() == "c"
