#!/usr/bin/env bash
# Submit the pipeline's stages chained with --dependency=afterok: each starts only when the
# previous one ended with exit code 0. Configure the stages with the variables documented at
# the top of each template; they are passed on to the jobs (sbatch exports the environment).
#
#   PIPELINE_STAGES  stages to submit, in order, from: simulate train track infer
#                    [simulate train infer]
#   SBATCH_ARGS      extra sbatch options for every stage (e.g. --account=abc --partition=gpu) []
#
# When `train` is among the stages, `infer` uses the model it writes (INFER_MODEL=$TRAIN_OUT);
# when `track` is, `infer` reads its trajectory store (INFER_INPUT=$TRACK_OUT).
# Prints one "stage job-id" line per submitted job.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ANOMALOUSNET_SLURM_DIR=$here
stages=${PIPELINE_STAGES:-simulate train infer}

if [[ " $stages " == *" train "* ]]; then
  export TRAIN_OUT=${TRAIN_OUT:-models/anomalousnet}
  export INFER_MODEL=${INFER_MODEL:-$TRAIN_OUT}
fi
if [[ " $stages " == *" track "* ]]; then
  export TRACK_OUT=${TRACK_OUT:-data/tracks}
  export INFER_INPUT=${INFER_INPUT:-$TRACK_OUT}
fi

previous=""
for stage in $stages; do
  [ -f "$here/$stage.sbatch" ] || { echo "unknown stage '$stage' (simulate train track infer)" >&2; exit 2; }
  dependency=()
  [ -n "$previous" ] && dependency=(--dependency="afterok:$previous")
  # shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
  previous=$(sbatch --parsable "${dependency[@]}" ${SBATCH_ARGS:-} "$here/$stage.sbatch")
  previous=${previous%%;*}
  echo "$stage $previous"
done
