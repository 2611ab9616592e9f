#!/usr/bin/env bash
# Build the Apptainer image from the repository root: containers/build.sh [OUT.sif]
# Needs apptainer >= 1.1 (or singularity), root or --fakeroot (APPTAINER_BUILD_ARGS=--fakeroot),
# network access to Docker Hub and the Python package index, and about 20 GB of temporary
# space (APPTAINER_TMPDIR and APPTAINER_CACHEDIR on scratch).
# Then the image's %test: with --nv where a GPU answers (nvidia-smi), and then it fails unless
# TensorFlow sees the GPU. Then: ANOMALOUSNET_SIF=$PWD/anomalousnet.sif sbatch slurm/infer.sbatch
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/anomalousnet.sif}
builder=$(command -v apptainer || command -v singularity || true)
[ -n "$builder" ] || { echo "apptainer (or singularity) is not installed" >&2; exit 1; }
cd "$root"   # %files paths are relative to the repository root
# shellcheck disable=SC2086  # APPTAINER_BUILD_ARGS is a list of options
"$builder" build --force ${APPTAINER_BUILD_ARGS:-} "$out" containers/anomalousnet.def
if nvidia-smi -L >/dev/null 2>&1; then
  APPTAINERENV_ANOMALOUSNET_REQUIRE_GPU=1 SINGULARITYENV_ANOMALOUSNET_REQUIRE_GPU=1 "$builder" test --nv "$out"
else
  echo "no GPU here (nvidia-smi): testing without --nv; check on a GPU node with" \
    "apptainer exec --nv $out anomalousnet-batch info --require-gpu" >&2
  "$builder" test "$out"
fi
echo "built $out"
