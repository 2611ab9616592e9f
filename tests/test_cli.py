"""The console script: help, version, and `store validate` exit codes."""
import subprocess
import sys

import numpy as np

from anomalousnet import __version__
from anomalousnet.io import store as st

CLI = [sys.executable, "-m", "anomalousnet_cli"]


def run(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_help_and_version():
    assert run("--help").returncode == 0
    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_store_validate_reports_good_and_bad(tmp_path):
    traj = st.Trajectories.from_arrays([{"x": np.arange(4.0), "y": np.zeros(4)}])
    st.write_shard(tmp_path / "good.h5", traj)
    st.write_index(tmp_path, "trajectories")
    (tmp_path.parent / "bad.h5").write_bytes(b"not hdf5")
    out = run("store", "validate", str(tmp_path), str(tmp_path.parent / "bad.h5"))
    assert out.returncode == 1
    assert "ok " in out.stdout and "1 tracks, 4 points" in out.stdout
    assert "bad.h5: not a readable HDF5 file" in out.stderr
