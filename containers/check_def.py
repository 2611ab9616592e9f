"""Checks of the Apptainer definition file that run where Apptainer cannot be installed.

    python containers/check_def.py containers/anomalousnet.def [--install VENV_DIR]

1. Structure: every ``%section`` is one Apptainer knows (a misspelled one would be
   silently ignored by a build); the sections the image needs are present; the header,
   labels (version = the package's), ``%files`` sources and ``%runscript`` are right,
   read through spython's parser.
2. ``shellcheck`` on the scripts of ``%post``, ``%test``, ``%runscript``, ``%environment``.
3. With ``--install``: the ``pip install`` steps of ``%post`` run, in order, in a new
   clean virtual environment (the repository standing in for /opt/anomalousnet, the
   CUDA-only build flag dropped, the pip cache allowed), then the installed CLI answers.
Exit status 1 with one line per problem when a check fails.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KNOWN_SECTIONS = {"setup", "files", "environment", "post", "runscript", "startscript", "test", "labels", "help",
                  "arguments", "appinstall", "appfiles", "appenv", "apprun", "applabels", "apptest", "apphelp"}
REQUIRED_SECTIONS = ("files", "environment", "post", "runscript", "test", "labels")
SCRIPT_SECTIONS = ("post", "test", "runscript", "environment")
INSTALL_DIR = "/opt/anomalousnet"


class DefinitionError(Exception):
    pass


def raw_sections(path: Path) -> dict[str, str]:
    """Section name -> body text, for every ``%name`` header line of the file."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"^%(\S+)", line)
        if match:
            current = match.group(1)
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def check_structure(path: Path) -> list[str]:
    from spython.main.parse.parsers import SingularityParser

    problems = []
    sections = raw_sections(path)
    for name in sections:
        if name not in KNOWN_SECTIONS:
            problems.append(f"{path}: unknown section %{name} (a build would ignore it)")
    for name in REQUIRED_SECTIONS:
        if name not in sections:
            problems.append(f"{path}: section %{name} is missing")
    recipe = SingularityParser(str(path)).recipe["spython-base"]
    if not re.fullmatch(r"tensorflow/tensorflow:2\.18\.\d+-gpu", recipe.fromHeader or ""):
        problems.append(f"{path}: base image {recipe.fromHeader!r} is not a TensorFlow 2.18 GPU image")
    from anomalousnet import __version__
    if f"org.opencontainers.image.version {__version__}" not in recipe.labels:
        problems.append(f"{path}: %labels lack the version {__version__}")
    for entry in recipe.files:
        source = entry.split()[0]
        if not (ROOT / source).exists():
            problems.append(f"{path}: %files source {source} does not exist in the repository")
    if "anomalousnet-batch" not in (recipe.cmd or ""):
        problems.append(f"{path}: %runscript does not run anomalousnet-batch")
    if not any("pip install" in line for line in recipe.install):
        problems.append(f"{path}: %post installs nothing with pip")
    return problems


def check_scripts(path: Path) -> list[str]:
    problems = []
    sections = raw_sections(path)
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCRIPT_SECTIONS:
            if name not in sections:
                continue
            script = Path(tmp) / f"{name}.sh"
            script.write_text("#!/bin/sh\n" + sections[name] + "\n")
            out = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
            if out.returncode:
                problems.append(f"{path}: shellcheck fails on %{name}:\n{out.stdout.strip()}")
    return problems


def pip_steps(path: Path) -> list[str]:
    """The ``pip install`` lines of %post, for a clean venv here: the repository for
    /opt/anomalousnet, the pip cache allowed, the CUDA-only Horovod flag dropped."""
    from spython.main.parse.parsers import SingularityParser

    steps = []
    for line in SingularityParser(str(path)).recipe["spython-base"].install:
        if "pip install" not in line:
            continue
        line = line.replace(INSTALL_DIR, str(ROOT)).replace("--no-cache-dir", "")
        steps.append(re.sub(r"\bHOROVOD_GPU_OPERATIONS=\S+\s*", "", line))
    return steps


def check_install(path: Path, env_dir: Path) -> list[str]:
    venv.create(env_dir, with_pip=True, clear=True)
    bin_dir = env_dir / "bin"
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for step in pip_steps(path):
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
    problems = check_structure(args.definition) + check_scripts(args.definition)
    if not problems and args.install:
        problems += check_install(args.definition, args.install)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
