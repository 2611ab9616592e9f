#!/usr/bin/env bash
# Build the Apptainer image from the repository root: containers/build.sh [OUT.sif]
# Needs apptainer (or singularity) and network access to the base image and package index.
# Then: ANOMALOUSNET_SIF=$PWD/anomalousnet.sif sbatch slurm/infer.sbatch
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/anomalousnet.sif}
builder=$(command -v apptainer || command -v singularity || true)
[ -n "$builder" ] || { echo "apptainer (or singularity) is not installed" >&2; exit 1; }
cd "$root"   # %files paths are relative to the repository root
"$builder" build --force "$out" containers/anomalousnet.def
"$builder" test "$out"
echo "built $out"
