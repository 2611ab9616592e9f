"""Write constraints.txt: the exact version of every Python package the suite installs,
for Python 3.11 on Linux x86-64, used by `make env` and by every pip line of the image.

    .venv/bin/python containers/lock.py      # after changing setup.cfg and `make env`

The pins are the tested environment (`pip freeze --all` of the venv the tests ran in) plus
what only the image installs: the `gpu` extra's CUDA wheels, resolved against those pins
(`pip install --dry-run --report`, metadata only, nothing downloaded or installed).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "constraints.txt"
HEADER = """\
# Exact versions for every pip install of the suite (Makefile and containers/anomalousnet.def).
# Python 3.11, Linux x86-64. Regenerate with: .venv/bin/python containers/lock.py
"""


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith("#"):
            found[name.lower().replace("_", "-")] = version
    return found


def main() -> int:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    tested = pins(subprocess.run(pip + ["freeze", "--all", "--exclude-editable"], check=True,
                                 capture_output=True, text=True).stdout.splitlines())
    with tempfile.TemporaryDirectory() as tmp:
        frozen, report = Path(tmp) / "frozen.txt", Path(tmp) / "report.json"
        frozen.write_text("".join(f"{n}=={v}\n" for n, v in tested.items() if n != "anomalousnet-batch"))
        subprocess.run(pip + ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
                              "-c", str(frozen), f"{ROOT}[gpu,video,slurm,test]"], check=True)
        resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                    for item in json.loads(report.read_text())["install"]}
    resolved.pop("anomalousnet-batch", None)
    locked = {**tested, **resolved}
    OUT.write_text(HEADER + "".join(f"{name}=={locked[name]}\n" for name in sorted(locked)))
    print(f"{OUT}: {len(locked)} packages ({len(set(resolved) - set(tested))} only in the image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
