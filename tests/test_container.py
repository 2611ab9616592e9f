"""The Apptainer definition, checked without Apptainer: structure per stage, the CUDA/cuDNN
release against the pinned TensorFlow, pip lines under the constraints file, shellcheck, its
pip steps in a clean venv, and its %test's GPU requirement; broken copies are caught."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "containers"))
import check_def  # noqa: E402

DEF = ROOT / "containers" / "anomalousnet.def"
needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None,
                                      reason="shellcheck not installed (tests/setup-system.sh installs it)")


def broken_copy(tmp_path, old, new):
    text = DEF.read_text()
    assert old in text
    path = tmp_path / "broken.def"
    path.write_text(text.replace(old, new, 1))
    return path


def test_definition_structure_is_complete():
    assert check_def.check_structure(DEF) == []
    stages = check_def.read_stages(DEF)
    assert [s.name for s in stages] == ["build", "final"]
    assert 'exec anomalousnet-batch "$@"' in stages[-1].sections["runscript"]
    assert "HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_WITH_MPI=1" in stages[0].sections["post"]
    assert "/opt/wheels /opt/wheels" in stages[-1].sections["files from build"]


def test_misspelled_or_missing_section_is_caught(tmp_path):
    problems = check_def.check_structure(broken_copy(tmp_path, "%runscript", "%runscirpt"))
    assert any("unknown section %runscirpt" in p for p in problems)
    assert any("section %runscript is missing" in p for p in problems)


def test_base_images_and_cuda_wheels_match_the_pinned_tensorflow():
    assert check_def.check_versions(DEF) == []
    pins = check_def.constraint_pins()
    assert pins["tensorflow"].startswith("2.18.") and pins["nvidia-cudnn-cu12"].startswith("9.")


@pytest.mark.parametrize("old, new, expected", [
    # TensorFlow 2.18's own image: CUDA 12.3 with cuDNN 8.9, the GPUs are not registered
    ("nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04", "nvidia/cuda:12.3.2-cudnn9-runtime-ubuntu22.04",
     "CUDA 12.3 / cuDNN 9; tensorflow 2.18.1 is built for CUDA 12.5 / cuDNN 9"),
    ("nvidia/cuda:12.5.1-cudnn-devel-ubuntu22.04", "nvidia/cuda:12.5.1-cudnn8-devel-ubuntu22.04",
     "stage build: base nvidia/cuda:12.5.1-cudnn8-devel-ubuntu22.04 has CUDA 12.5 / cuDNN 8"),
    ("nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04", "nvidia/cuda:12.5.1-cudnn-devel-ubuntu22.04",
     "is not a runtime image"),
    ("-c /opt/anomalousnet/constraints.txt \"/opt/anomalousnet[gpu", "\"/opt/anomalousnet[gpu",
     "a pip line does not use /opt/anomalousnet/constraints.txt"),
    ("python3.11 python3.11-venv openmpi-bin libopenmpi3", "python3.11 python3.11-venv openmpi-bin g++",
     "the last stage installs a compiler or headers: g++"),
])
def test_a_mismatched_or_unpinned_definition_is_caught(tmp_path, old, new, expected):
    if "runtime" in old and "devel" in new:  # only the last stage's base
        text = DEF.read_text()
        path = tmp_path / "broken.def"
        path.write_text(text.replace(old, new))
    else:
        path = broken_copy(tmp_path, old, new)
    problems = check_def.check_versions(path)
    assert any(expected in p for p in problems), problems


def test_cuda_wheels_of_another_release_are_caught(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(check_def.CONSTRAINTS.read_text().replace("nvidia-cudnn-cu12==9.", "nvidia-cudnn-cu12==8."))
    problems = check_def.check_versions(DEF, constraints)
    assert any("CUDA wheels are CUDA 12.5 / cuDNN 8" in p for p in problems), problems


@needs_shellcheck
def test_scripts_pass_shellcheck_and_a_bad_one_fails(tmp_path):
    assert check_def.check_scripts(DEF) == []
    problems = check_def.check_scripts(broken_copy(tmp_path, "anomalousnet-batch --version",
                                                   "anomalousnet-batch --version $UNQUOTED_VAR"))
    assert problems and "%test" in problems[0]


def test_the_image_test_fails_when_a_gpu_is_asked_for_and_none_is_visible(tmp_path):
    """%test run here (no GPU) as `apptainer test --nv` on a GPU node would run it when
    TensorFlow does not see the GPU: it must exit non-zero, saying why."""
    script = tmp_path / "test.sh"
    script.write_text("#!/bin/sh\n" + check_def.read_stages(DEF)[-1].sections["test"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "ANOMALOUSNET_REQUIRE_GPU": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "a GPU was required but tensorflow sees none" in out.stderr
    assert "built for CUDA 12.5" in out.stdout  # the pinned wheel, as the table says
    assert "built-in model: heads alpha, K, state; 2 Brownian walks" in out.stdout


def test_install_steps_resolve_in_a_clean_venv(tmp_path):
    assert check_def.check_install(DEF, tmp_path / "venv") == []


def test_failing_install_line_is_caught(tmp_path):
    broken = broken_copy(tmp_path, "constraints.txt --upgrade pip setuptools wheel",
                         "constraints.txt anomalousnet-no-such-package==9.9")  # the first pip line
    problems = check_def.check_install(broken, tmp_path / "venv")
    assert problems and "install step failed" in problems[0] and "no-such-package" in problems[0]


@needs_shellcheck
def test_slurm_templates_pass_shellcheck():
    scripts = sorted(str(p) for p in (ROOT / "slurm").iterdir() if p.suffix in (".sbatch", ".sh"))
    out = subprocess.run(["shellcheck", "-x", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
