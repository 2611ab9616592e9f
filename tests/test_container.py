"""The Apptainer definition, checked without Apptainer: structure (spython), shellcheck,
and its pip install steps run in a clean virtual environment; broken copies are caught."""
import shutil
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
    sections = check_def.raw_sections(DEF)
    assert 'exec anomalousnet-batch "$@"' in sections["runscript"]
    assert "horovod==0.28.1" in sections["post"] and "HOROVOD_GPU_OPERATIONS=NCCL" in sections["post"]


def test_misspelled_or_missing_section_is_caught(tmp_path):
    problems = check_def.check_structure(broken_copy(tmp_path, "%runscript", "%runscirpt"))
    assert any("unknown section %runscirpt" in p for p in problems)
    assert any("section %runscript is missing" in p for p in problems)


@needs_shellcheck
def test_scripts_pass_shellcheck_and_a_bad_one_fails(tmp_path):
    assert check_def.check_scripts(DEF) == []
    problems = check_def.check_scripts(broken_copy(tmp_path, "anomalousnet-batch --version",
                                                   "anomalousnet-batch --version $UNQUOTED_VAR"))
    assert problems and "%test" in problems[0]


def test_install_steps_resolve_in_a_clean_venv(tmp_path):
    assert check_def.check_install(DEF, tmp_path / "venv") == []


def test_failing_install_line_is_caught(tmp_path):
    broken = broken_copy(tmp_path, 'python3 -m pip install --no-cache-dir "/opt/anomalousnet[video,slurm]"',
                         'python3 -m pip install --no-cache-dir "anomalousnet-no-such-package==9.9"')
    problems = check_def.check_install(broken, tmp_path / "venv")
    assert problems and "install step failed" in problems[0] and "no-such-package" in problems[0]
