#!/usr/bin/env bash
# System services and tools the test suite uses, installed and started by the project itself:
# Debian's SLURM + munge (a single-node cluster for the sbatch templates) and shellcheck.
# Idempotent and quick when already done. Without root it only says what is missing; the
# tests that need these are then skipped with that reason.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
need=()
for tool in slurmctld slurmd sbatch munged shellcheck; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "not root: cannot install ${need[*]}; SLURM/shellcheck tests will be skipped" >&2; exit 0
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge shellcheck
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: not starting SLURM; SLURM tests will be skipped unless a cluster answers" >&2; exit 0
fi
"$here/slurm/start-local-slurm.sh"
