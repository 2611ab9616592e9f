"""The sbatch templates, submitted for real to the single-node SLURM that `make test`
starts (tests/setup-system.sh): pipeline.sh chains simulate.sbatch (Dask cluster inside
the allocation) and train.sbatch (2 Horovod ranks over gloo); infer.sbatch runs as a
2-task job array. Outputs are checked with the store validator."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalousnet.io import store as st

ROOT = Path(__file__).resolve().parent.parent
SLURM = ROOT / "slurm"
KEPT_LOGS = Path("/tmp/anomalousnet-slurm-logs")  # shown by .ci/run when the suite fails


def slurm_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not slurm_answers(), reason="no SLURM cluster answers (make system starts one)")


def job_env(workdir: Path, **variables) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the suite's environment
    env.update({"ANOMALOUSNET_SLURM_DIR": str(SLURM), "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"})
    env.update({k: str(v) for k, v in variables.items()})
    return env


def wait_for(job_ids: list[str], workdir: Path, timeout: float = 900) -> dict[str, str]:
    """Wait until the jobs leave the queue; return job id -> 'STATE exit' from scontrol."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True, text=True)
        if not queue.stdout.strip():
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", *job_ids])
        keep_logs(workdir)
        pytest.fail(f"jobs {job_ids} still queued or running after {timeout} s")
    states = {}
    for job in job_ids:
        info = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
        for line in info.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            states[fields["JobId"]] = f"{fields['JobState']} {fields['ExitCode']}"
    return states


def keep_logs(workdir: Path) -> str:
    KEPT_LOGS.mkdir(exist_ok=True)
    text = []
    for log in sorted(workdir.glob("*.out")) + sorted(workdir.glob("dask-*.log")):
        shutil.copy(log, KEPT_LOGS / log.name)
        text.append(f"== {log.name}\n{log.read_text()[-3000:]}")
    return "\n".join(text)


def assert_completed(states: dict[str, str], workdir: Path) -> None:
    if not states or any(s != "COMPLETED 0:0" for s in states.values()):
        pytest.fail(f"job states {states}\n{keep_logs(workdir)}")


def test_pipeline_simulate_then_train_with_two_horovod_ranks(tmp_path):
    env = job_env(tmp_path, PIPELINE_STAGES="simulate train", SBATCH_ARGS="--ntasks=2 --cpus-per-task=1 --time=20",
                  SIM_OUT=tmp_path / "train", SIM_N=96, SIM_SEED=3, SIM_LENGTH=64, SIM_SHARD_SIZE=24,
                  SIM_ARGS="--min-length 40 --no-progress",
                  TRAIN_DATA=f"{tmp_path}/train/shard-*.h5", TRAIN_OUT=tmp_path / "model", TRAIN_TARGET="alpha",
                  TRAIN_PRESET="cpu", TRAIN_EPOCHS=1, TRAIN_BATCH=8,
                  TRAIN_ARGS="--steps-per-epoch 3 --patience 0 --no-progress")
    log = image_env(tmp_path, env)  # in the "image": every path each stage uses must be bound
    out = subprocess.run([str(SLURM / "pipeline.sh")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    jobs = dict(line.split() for line in out.stdout.splitlines())
    assert list(jobs) == ["simulate", "train"]
    queued = subprocess.run(["scontrol", "-o", "show", "job", jobs["train"]], capture_output=True, text=True).stdout
    assert f"afterok:{jobs['simulate']}" in queued  # train waits for simulate (still running now)
    assert_completed(wait_for(list(jobs.values()), tmp_path), tmp_path)

    leftover = subprocess.run(["pgrep", "-f", f"dask .*--scheduler-file {tmp_path}"], capture_output=True, text=True)
    assert leftover.stdout == "", "the Dask cluster of simulate.sbatch outlived its job"
    index = st.validate_store(tmp_path / "train")
    assert index.kind == "training" and int(index.n_tracks.sum()) == 96 and len(index.shard_names) == 4
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    train_log = (tmp_path / f"slurm-anomalousnet-train-{jobs['train']}.out").read_text()
    assert (tmp_path / f"dask-scheduler-{jobs['simulate']}.log").is_file()  # beside the job's log
    assert not (tmp_path / "anomalousnet").exists()  # every output where the variables said
    assert "horovodrun --gloo -np 2" in train_log
    assert meta["heads"]["alpha"]["training"]["ranks"] == 2
    assert (tmp_path / "model" / "alpha.weights.h5").is_file()
    commands = [" ".join(call[6:8]) for call in image_calls(log)]
    assert commands.count("dask worker") == 2 and commands.count("horovodrun --gloo") == 1
    assert "dask scheduler" in commands and "anomalousnet-batch -v" in commands


def test_track_job_in_the_image_binds_videos_and_store(tmp_path):
    from anomalousnet.simulation.synthetic_video import SyntheticVideo

    videos = tmp_path / "videos"
    videos.mkdir()
    for seed in range(2):
        SyntheticVideo(n_frames=30, shape=(64, 64), n_particles=6, D=0.3, sigma_px=1.2, seed=seed).write(
            videos / f"movie_{seed}.tif")
    submit = tmp_path / "submit"
    submit.mkdir()
    env = job_env(submit, TRACK_INPUT=f"{videos}/*.tif", TRACK_OUT=tmp_path / "scratch" / "tracks",
                  TRACK_ARGS="--no-progress")
    log = image_env(tmp_path, env)
    out = subprocess.run(["sbatch", "--parsable", "--ntasks=2", "--cpus-per-task=1", str(SLURM / "track.sbatch")],
                         cwd=submit, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert_completed(wait_for([out.stdout.strip()], submit), submit)
    index = st.validate_store(tmp_path / "scratch" / "tracks")
    assert index.kind == "trajectories" and len(index.shard_names) == 2 and int(index.n_tracks.sum()) >= 6
    calls = image_calls(log)
    track = [c for c in calls if c[6:9] == ["anomalousnet-batch", "-v", "track"]]
    assert len(track) == 1 and track[0][track[0].index("--input") + 1] == f"{videos}/*.tif"
    assert [" ".join(c[6:8]) for c in calls].count("dask worker") == 2


def test_train_with_mpi_launch_refuses_a_horovod_built_without_mpi(tmp_path):
    env = job_env(tmp_path, HOROVOD_LAUNCH="mpi", TRAIN_DATA=f"{tmp_path}/train/shard-*.h5",
                  TRAIN_OUT=tmp_path / "model")
    out = subprocess.run(["sbatch", "--parsable", "--ntasks=2", "--cpus-per-task=1", "--time=20",
                          str(SLURM / "train.sbatch")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip()
    assert wait_for([job], tmp_path) == {job: "FAILED 2:0"}
    log = (tmp_path / f"slurm-anomalousnet-train-{job}.out").read_text()
    assert "needs Horovod built with MPI" in log and not (tmp_path / "model").exists()


def write_csv(path: Path, seed: int, n_tracks: int = 6, length: int = 60) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for idx in range(n_tracks):
        xy = np.cumsum(rng.normal(scale=0.8, size=(length, 2)), axis=0) + rng.uniform(0, 100, 2)
        rows += [(idx, t, x, y) for t, (x, y) in enumerate(xy)]
    pd.DataFrame(rows, columns=["traj_idx", "frame", "x", "y"]).to_csv(path, index=False)


def test_infer_job_array_two_tasks_write_valid_results(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(3):
        write_csv(inputs / f"trajs_fov_{i}.csv", seed=i)
    env = job_env(tmp_path, INFER_INPUT=f"{inputs}/*.csv", INFER_OUT=tmp_path / "results", INFER_MODEL="default")
    out = subprocess.run(["sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", str(SLURM / "infer.sbatch")],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    array = out.stdout.strip().split(";")[0]
    states = wait_for([array], tmp_path)
    assert len(states) == 2, states
    assert_completed(states, tmp_path)

    tasks = sorted((tmp_path / "results").glob("task-*"))
    assert [t.name for t in tasks] == ["task-0000", "task-0001"]
    assert (tmp_path / "results" / "manifest.txt").read_text().startswith("# tasks 2 first 0 step 1\n")
    segments = []
    for task in tasks:
        results = [p for p in task.rglob(st.INDEX_NAME)]
        assert results, f"no results store in {task}"
        for index_path in results:
            assert st.validate_store(index_path.parent).kind == "results"
        segments.append(pd.read_csv(task / "segments.csv"))
    sources = [set(s["source"].map(lambda p: Path(p).name)) for s in segments]
    assert sources == [{"trajs_fov_0.csv", "trajs_fov_2.csv"}, {"trajs_fov_1.csv"}]  # round-robin


STAND_IN = """#!/usr/bin/env bash
# apptainer stand-in: records its arguments (one file per call, NUL-separated), then runs the
# command as `exec --cleanenv` would: with only PATH, HOME and the APPTAINERENV_ variables.
printf '%s\\0' "$@" >"$STAND_IN_LOG/call-$(date +%s%N)-$$"
[ "$1" = exec ] || exit 2
shift
while [[ $1 == --* ]]; do [ "$1" = --bind ] && shift; shift; done
shift  # the image
vars=(PATH="$PATH" HOME="$HOME")
for name in $(compgen -e); do
  [[ $name == APPTAINERENV_* ]] && vars+=("${name#APPTAINERENV_}=${!name}")
done
exec env -i "${vars[@]}" "$@"
"""


def image_env(tmp_path: Path, env: dict) -> Path:
    """Run the templates in an "image": ANOMALOUSNET_SIF set, the apptainer stand-in first on
    PATH. Returns the folder its calls are recorded in."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apptainer-calls"
    bin_dir.mkdir()
    log.mkdir()
    (bin_dir / "apptainer").write_text(STAND_IN)
    (bin_dir / "apptainer").chmod(0o755)
    env.update(ANOMALOUSNET_SIF=str(tmp_path / "image.sif"), STAND_IN_LOG=str(log), PATH=f"{bin_dir}:{env['PATH']}")
    return log


def image_calls(log: Path) -> list[list[str]]:
    """Every recorded `apptainer ...` call, in order, checked: `exec --nv --cleanenv --bind
    DIRS IMAGE COMMAND...` where every absolute path of COMMAND (a glob pattern up to its first
    wildcard) lies in a bound folder, as it must to be seen inside the image."""
    calls = [f.read_text().split("\0")[:-1] for f in sorted(log.iterdir())]
    for argv in calls:
        assert argv[:4] == ["exec", "--nv", "--cleanenv", "--bind"], argv
        binds = [Path(b) for b in argv[4].split(",")]
        for arg in argv[6:]:
            if arg.startswith("/"):
                path = Path(re.split(r"[*?[]", arg)[0]).resolve()
                assert any(path == b or b in path.parents for b in binds), f"{arg} is not bound in {argv}"
    return calls


def test_infer_pipeline_in_the_image_binds_its_paths_reruns_a_task_with_its_own_files_and_merges(tmp_path):
    inputs = tmp_path / "data"  # not the submit folder: it must be bound to be seen
    inputs.mkdir()
    for i in range(7):
        write_csv(inputs / f"trajs_fov_{i}.csv", seed=i, n_tracks=2, length=30)
    submit = tmp_path / "submit"
    submit.mkdir()
    env = job_env(submit, INFER_INPUT=f"{inputs}/*.csv", INFER_OUT=tmp_path / "out" / "results",
                  INFER_MODEL="default")
    log = image_env(tmp_path, env)

    # README step 3: pipeline.sh submits the array, then the merge job afterok on it
    env.update(PIPELINE_STAGES="infer", SBATCH_ARGS_INFER="--array=0-2 --cpus-per-task=1")
    out = subprocess.run([str(SLURM / "pipeline.sh")], cwd=submit, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    jobs = dict(line.split() for line in out.stdout.splitlines())
    assert list(jobs) == ["infer", "merge"]
    assert_completed(wait_for(list(jobs.values()), submit), submit)
    results = tmp_path / "out" / "results"
    sources = {t.name: sorted(set(pd.read_csv(t / "segments.csv")["source"].map(lambda p: Path(p).name)))
               for t in sorted(results.glob("task-*"))}
    assert sources == {"task-0000": ["trajs_fov_0.csv", "trajs_fov_3.csv", "trajs_fov_6.csv"],
                       "task-0001": ["trajs_fov_1.csv", "trajs_fov_4.csv"],
                       "task-0002": ["trajs_fov_2.csv", "trajs_fov_5.csv"]}  # file i -> task i mod 3
    calls = image_calls(log)  # every path of every call bound, --nv --cleanenv given
    infer_calls = [c for c in calls if c[6:9] == ["anomalousnet-batch", "-v", "infer"]]
    assert len(infer_calls) == 3 and [c[6:8] for c in calls].count(["anomalousnet-batch", "merge"]) == 1
    task_dirs = {str((results / name).resolve()) for name in sources}
    for call in infer_calls:  # the inputs' folder and the task's own results folder are bound
        binds = call[4].split(",")
        assert str(inputs.resolve()) in binds and task_dirs & set(binds), binds

    def merged_equals_the_tasks():
        for table in ("segments.csv", "zones.csv"):
            parts = [pd.read_csv(results / name / table) for name in sources]
            pd.testing.assert_frame_equal(pd.read_csv(results / table), pd.concat(parts, ignore_index=True))
        summary = json.loads((results / "summary.json").read_text())
        assert len(summary["written"]) + len(summary["kept"]) == 7 and not summary["failed"]

    merged_equals_the_tasks()

    def sbatch(*args):
        out = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", *args], cwd=submit, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert_completed(wait_for([out.stdout.strip().split(";")[0]], submit), submit)

    # Re-running task 1 alone (it failed, say) gives it the same files, in the same folder;
    # merging again gives the same tables.
    shutil.rmtree(results / "task-0001")
    (results / "segments.csv").unlink()
    sbatch("--array=1", str(SLURM / "infer.sbatch"))
    again = sorted(set(pd.read_csv(results / "task-0001" / "segments.csv")["source"].map(lambda p: Path(p).name)))
    assert again == sources["task-0001"] and sorted(p.name for p in results.glob("task-*")) == list(sources)
    sbatch(str(SLURM / "merge.sbatch"))
    merged_equals_the_tasks()
    image_calls(log)


def test_a_pattern_that_matches_nothing_is_refused_before_submission(tmp_path):
    env = job_env(tmp_path, PIPELINE_STAGES="infer", INFER_INPUT=f"{tmp_path}/nothing/*.tif")
    out = subprocess.run([str(SLURM / "pipeline.sh")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "matches no file or folder" in out.stderr and out.stdout == ""


def test_train_job_signalled_requeues_itself_and_ends_with_the_uninterrupted_weights(tmp_path):
    import h5py

    data = tmp_path / "train"
    sim = subprocess.run([sys.executable, "-m", "anomalousnet_cli", "simulate", "trajectories", "--out", str(data),
                          "--n", "64", "--length", "64", "--shard-size", "32", "--seed", "5", "--min-length", "40",
                          "--no-progress"], env=job_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr

    def submit(name):
        env = job_env(tmp_path, TRAIN_DATA=f"{data}/shard-*.h5", TRAIN_OUT=tmp_path / name, TRAIN_TARGET="alpha",
                      TRAIN_EPOCHS=6, TRAIN_BATCH=8, TRAIN_ARGS="--steps-per-epoch 6 --patience 0 --no-progress --seed 2")
        out = subprocess.run(["sbatch", "--parsable", "--ntasks=1", "--cpus-per-task=1", "--time=20",
                              str(SLURM / "train.sbatch")], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    straight = submit("straight")
    assert_completed(wait_for([straight], tmp_path), tmp_path)
    job = submit("preempted")
    state = tmp_path / "preempted" / "checkpoints" / "alpha" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.exists() and 1 <= json.loads(state.read_text())["epoch"] < 6) and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)  # what --signal=B:USR1@300 sends
    assert_completed(wait_for([job], tmp_path), tmp_path)
    info = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
    assert "Restarts=1" in info, info  # it requeued itself once, then finished
    log = (tmp_path / f"slurm-anomalousnet-train-{job}.out").read_text()
    assert "requeueing" in log and "resuming after epoch" in log

    def weights(name):
        with h5py.File(tmp_path / name / "alpha.weights.h5") as f:
            arrays = []
            f.visititems(lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return arrays

    for a, b in zip(weights("straight"), weights("preempted")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
