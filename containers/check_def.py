"""Checks of the Apptainer definition file that run where Apptainer cannot be installed.

    python containers/check_def.py containers/anomalousnet.def [--install VENV_DIR]

1. Structure, per stage (``Bootstrap:`` starts one): every ``%section`` is one Apptainer
   knows (a misspelled one would be silently ignored by a build); the last stage, the image
   that runs, has the sections it needs, the package's version label, ``%files`` sources that
   exist, a ``%runscript`` running the suite and a ``%test`` that fails without a GPU when
   asked for one.
2. Versions: the pinned TensorFlow (constraints.txt) is built for one CUDA and cuDNN release
   (TF_BUILT_FOR); every stage's NVIDIA base image and the CUDA/cuDNN wheels in
   constraints.txt must be that release. The last stage is a runtime image and installs no
   compiler. Every ``pip`` line installs under the constraints file.
3. ``shellcheck`` on the scripts of ``%post``, ``%test``, ``%runscript``, ``%environment``.
4. With ``--install``: the ``pip`` lines of all stages run, in order, in a new clean virtual
   environment (the repository standing in for /opt/anomalousnet; the GPU-only parts dropped:
   the `gpu` extra's 3 GB of CUDA wheels, whose pins step 2 checks, and Horovod's NCCL and,
   without an MPI compiler here, MPI build flags), then the installed CLI answers.
Exit status 1 with one line per problem when a check fails.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
KNOWN_SECTIONS = {"setup", "files", "environment", "post", "runscript", "startscript", "test", "labels", "help",
                  "arguments", "appinstall", "appfiles", "appenv", "apprun", "applabels", "apptest", "apphelp"}
REQUIRED_SECTIONS = ("files", "environment", "post", "runscript", "test", "labels")
SCRIPT_SECTIONS = ("post", "test", "runscript", "environment")
INSTALL_DIR = "/opt/anomalousnet"
IMAGE_CONSTRAINTS = f"{INSTALL_DIR}/constraints.txt"
# TensorFlow release -> the CUDA (major.minor) and cuDNN (major) it is built for, from
# TensorFlow's tested build configurations (tf.sysconfig.get_build_info() of the pinned wheel
# says the same: CUDA 12.5.1, cuDNN 9 for 2.18).
TF_BUILT_FOR = {"2.15": ("12.2", "8"), "2.16": ("12.3", "8"), "2.17": ("12.3", "8"), "2.18": ("12.5", "9")}
# nvidia/cuda tags: VERSION-cudnn[N]-{runtime,devel}-OS; a bare "cudnn" (CUDA >= 12.4) is cuDNN 9.
NVIDIA_TAG = re.compile(r"nvidia/cuda:(\d+\.\d+)(?:\.\d+)?-cudnn(\d*)-(runtime|devel)-\S+")
COMPILERS = re.compile(r"(?<!\S)(g\+\+\S*|gcc\S*|clang\S*|cmake|make|build-essential|cuda-nvcc\S*|\S+-dev)(?!\S)")


@dataclass
class Stage:
    name: str
    header: dict[str, str]
    sections: dict[str, str] = field(default_factory=dict)  # "files" or "files from build" -> body


def read_stages(path: Path) -> list[Stage]:
    """The file's stages: header keywords and section bodies."""
    stages: list[Stage] = []
    current = None
    for line in path.read_text().splitlines():
        header = re.match(r"^(Bootstrap|From|Stage):\s*(\S+)", line)
        section = re.match(r"^%(\S+)(.*)$", line)
        if header:
            if header.group(1) == "Bootstrap" or not stages:
                stages.append(Stage(name=str(len(stages)), header={}))
                current = None
            stages[-1].header[header.group(1)] = header.group(2)
            if header.group(1) == "Stage":
                stages[-1].name = header.group(2)
        elif section and stages:
            current = (section.group(1) + " " + section.group(2).strip()).strip()
            stages[-1].sections.setdefault(current, "")
        elif current is not None and not line.startswith("#"):
            stages[-1].sections[current] += line + "\n"
    return stages


def commands(body: str) -> list[str]:
    """A script's commands, backslash continuations joined."""
    return [c.strip() for c in body.replace("\\\n", " ").splitlines() if c.strip()]


def constraint_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    from lock import pins  # containers/lock.py, which writes the file

    return pins(path.read_text().splitlines())


def check_structure(path: Path) -> list[str]:
    stages = read_stages(path)
    if not stages:
        return [f"{path}: no Bootstrap header"]
    problems = []
    for stage in stages:
        for name in stage.sections:
            if name.split()[0] not in KNOWN_SECTIONS:
                problems.append(f"{path}: stage {stage.name}: unknown section %{name} (a build would ignore it)")
        for name, body in stage.sections.items():
            if name.split()[0] == "files" and "from" not in name.split():
                for entry in commands(body):
                    if not (ROOT / entry.split()[0]).exists():
                        problems.append(f"{path}: %files source {entry.split()[0]} does not exist in the repository")
    final = stages[-1]
    for name in REQUIRED_SECTIONS:
        if name not in final.sections:
            problems.append(f"{path}: section %{name} is missing from the last stage (the image that runs)")
    from anomalousnet import __version__
    if f"org.opencontainers.image.version {__version__}" not in final.sections.get("labels", ""):
        problems.append(f"{path}: %labels lack the version {__version__}")
    if "anomalousnet-batch" not in final.sections.get("runscript", ""):
        problems.append(f"{path}: %runscript does not run anomalousnet-batch")
    if "info --require-gpu" not in final.sections.get("test", ""):
        problems.append(f"{path}: %test does not fail without a GPU when asked for one (anomalousnet-batch info "
                        "--require-gpu)")
    return problems


def check_versions(path: Path, constraints: Path = CONSTRAINTS) -> list[str]:
    stages = read_stages(path)
    pins = constraint_pins(constraints)
    tf = pins.get("tensorflow", "")
    if ".".join(tf.split(".")[:2]) not in TF_BUILT_FOR:
        return [f"{constraints}: tensorflow=={tf or '?'} is not in the CUDA/cuDNN table of check_def.py"]
    cuda, cudnn = TF_BUILT_FOR[".".join(tf.split(".")[:2])]
    problems = []
    for stage in stages:
        base = stage.header.get("From", "")
        tag = NVIDIA_TAG.fullmatch(base)
        if not tag:
            problems.append(f"{path}: stage {stage.name}: base {base!r} is not an nvidia/cuda cuDNN image")
            continue
        base_cudnn = tag.group(2) or ("9" if float(tag.group(1)) >= 12.4 else "8")
        if (tag.group(1), base_cudnn) != (cuda, cudnn):
            problems.append(f"{path}: stage {stage.name}: base {base} has CUDA {tag.group(1)} / cuDNN {base_cudnn}; "
                            f"tensorflow {tf} is built for CUDA {cuda} / cuDNN {cudnn}")
        if stage is stages[-1] and tag.group(3) != "runtime":
            problems.append(f"{path}: the last stage's base {base} is not a runtime image (compilers would ship)")
        for line in commands(stage.sections.get("post", "")):
            if re.search(r"\bpip\s+(install|wheel|download)\b", line) and not re.search(
                    rf"(-c|--constraint)[ =]{re.escape(IMAGE_CONSTRAINTS)}\b", line):
                problems.append(f"{path}: stage {stage.name}: a pip line does not use {IMAGE_CONSTRAINTS}: {line}")
            if stage is stages[-1] and "apt-get install" in line and COMPILERS.search(line):
                problems.append(f"{path}: the last stage installs a compiler or headers: "
                                f"{COMPILERS.search(line).group(0)}")
        if "pip " in stage.sections.get("post", "") and not re.search(
                rf"^\s*constraints\.txt\s+{re.escape(IMAGE_CONSTRAINTS)}\s*$", stage.sections.get("files", ""), re.M):
            problems.append(f"{path}: stage {stage.name}: %files does not copy constraints.txt to {IMAGE_CONSTRAINTS}")
    wheel_cuda = ".".join(pins.get("nvidia-cuda-runtime-cu12", "").split(".")[:2])
    wheel_cudnn = pins.get("nvidia-cudnn-cu12", "").split(".")[0]
    if (wheel_cuda, wheel_cudnn) != (cuda, cudnn):
        problems.append(f"{constraints}: CUDA wheels are CUDA {wheel_cuda or '?'} / cuDNN {wheel_cudnn or '?'}; "
                        f"tensorflow {tf} is built for CUDA {cuda} / cuDNN {cudnn}")
    return problems


def check_scripts(path: Path) -> list[str]:
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in read_stages(path):
            for name in SCRIPT_SECTIONS:
                if name not in stage.sections:
                    continue
                script = Path(tmp) / f"{name}.sh"
                script.write_text("#!/bin/sh\n" + stage.sections[name])
                out = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
                if out.returncode:
                    problems.append(f"{path}: shellcheck fails on %{name} of stage {stage.name}:\n{out.stdout.strip()}")
    return problems


def pip_steps(path: Path, env_dir: Path, wheel_dir: Path) -> list[str]:
    """The pip lines of every stage, rewritten for a clean venv on this CPU machine."""
    steps = []
    for stage in read_stages(path):
        for line in commands(stage.sections.get("post", "")):
            if not re.search(r"\bpip\s+(install|wheel)\b", line):
                continue
            line = line.replace("/opt/venv", str(env_dir)).replace("/opt/wheels", str(wheel_dir))
            line = line.replace(INSTALL_DIR, str(ROOT)).replace("--no-cache-dir", "").replace("[gpu,", "[")
            line = re.sub(r"\bHOROVOD_(GPU_OPERATIONS|CUDA_HOME)=\S+\s*", "", line)
            if shutil.which("mpicxx") is None:
                line = line.replace("HOROVOD_WITH_MPI=1", "HOROVOD_WITHOUT_MPI=1")
            steps.append(line)
    return steps


def check_install(path: Path, env_dir: Path) -> list[str]:
    venv.create(env_dir, with_pip=True, clear=True)
    bin_dir = env_dir / "bin"
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with tempfile.TemporaryDirectory() as wheels:
        for step in pip_steps(path, env_dir, Path(wheels)):
            print(f"+ {step}", flush=True)
            out = subprocess.run(["bash", "-c", f"set -eo pipefail; {step}"], env=env, capture_output=True, text=True)
            if out.returncode:
                tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-8:])
                return [f"{path}: install step failed in a clean venv: {step}\n{tail}"]
    out = subprocess.run([str(bin_dir / "anomalousnet-batch"), "--version"], capture_output=True, text=True)
    if out.returncode:
        return [f"{path}: anomalousnet-batch does not run after the install steps: {out.stderr.strip()[-500:]}"]
    return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("definition", type=Path)
    parser.add_argument("--install", type=Path, metavar="VENV_DIR", help="run the pip steps in a new venv there")
    args = parser.parse_args(argv)
    problems = check_structure(args.definition) + check_versions(args.definition) + check_scripts(args.definition)
    if not problems and args.install:
        problems += check_install(args.definition, args.install)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
