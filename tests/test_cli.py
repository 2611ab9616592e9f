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


def test_help_lists_every_command_with_its_own_line_without_importing_them():
    import importlib

    from anomalousnet_cli.main import COMMANDS

    for name, (target, line) in COMMANDS.items():
        module, attr = target.split(":")
        assert getattr(importlib.import_module(module), attr).get_short_help_str(limit=500) == line, name
    probe = ("import sys; sys.argv = ['anomalousnet-batch', '--help']\n"
             "from anomalousnet_cli.main import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('trackpy', 'ruptures', 'tensorflow', 'keras', 'distributed', 'scipy') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("[]"), out.stdout + out.stderr


def test_store_validate_reports_good_and_bad(tmp_path):
    traj = st.Trajectories.from_arrays([{"x": np.arange(4.0), "y": np.zeros(4)}])
    st.write_shard(tmp_path / "good.h5", traj)
    st.write_index(tmp_path, "trajectories")
    (tmp_path.parent / "bad.h5").write_bytes(b"not hdf5")
    out = run("store", "validate", str(tmp_path), str(tmp_path.parent / "bad.h5"))
    assert out.returncode == 1
    assert "ok " in out.stdout and "1 tracks, 4 points" in out.stdout
    assert "bad.h5: not a readable HDF5 file" in out.stderr
