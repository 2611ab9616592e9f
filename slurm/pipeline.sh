#!/usr/bin/env bash
# Submit the pipeline's stages chained with --dependency=afterok: each starts only when the
# previous one ended with exit code 0. Configure the stages with the variables documented at
# the top of each template; they are passed on to the jobs (sbatch exports the environment).
#
#   PIPELINE_STAGES  stages to submit, in order, from: simulate train track infer
#                    [simulate train infer]
#   ANOMALOUSNET_WORK  where outputs go unless a stage's variables say  [${SCRATCH:-$PWD}/anomalousnet]
#   SBATCH_ARGS      extra sbatch options for every stage (e.g. --account=abc) []
#   SBATCH_ARGS_<STAGE>  extra sbatch options for one stage, after SBATCH_ARGS
#                    (e.g. SBATCH_ARGS_TRAIN="--partition=gpu --gpus-per-task=1") []
#
# A stage whose predecessor fails is removed from the queue (--kill-on-invalid-dep=yes), not
# left pending for ever. Inputs that match nothing are refused here, before any submission.
# When `train` is among the stages, `infer` uses the model it writes (INFER_MODEL=$TRAIN_OUT);
# when `track` is, `infer` reads its trajectory store (INFER_INPUT=$TRACK_OUT).
# After `infer` (a job array), a `merge` job writes one segments.csv, ensemble.csv and
# summary.json for the whole run into INFER_OUT (SBATCH_ARGS_MERGE for its options).
# Prints one "stage job-id" line per submitted job.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ANOMALOUSNET_SLURM_DIR=$here
# outputs of every stage (unless its own variables say otherwise): scratch, not the checkout
export ANOMALOUSNET_WORK=${ANOMALOUSNET_WORK:-${SCRATCH:-$PWD}/anomalousnet}
stages=${PIPELINE_STAGES:-simulate train infer}

if [[ " $stages " == *" train "* ]]; then
  export TRAIN_OUT=${TRAIN_OUT:-$ANOMALOUSNET_WORK/model}
  export INFER_MODEL=${INFER_MODEL:-$TRAIN_OUT}
fi
if [[ " $stages " == *" track "* ]]; then
  export TRACK_OUT=${TRACK_OUT:-$ANOMALOUSNET_WORK/tracks}
  export INFER_INPUT=${INFER_INPUT:-$TRACK_OUT}
fi

if [[ " $stages " == *" infer "* && " $stages " != *" track "* ]]; then  # track writes infer's input
  shopt -s nullglob
  # shellcheck disable=SC2206  # the patterns are expanded here, on purpose
  matches=(${INFER_INPUT:-data/videos/*.tif})
  shopt -u nullglob
  if [ "${#matches[@]}" -eq 0 ]; then
    echo "INFER_INPUT='${INFER_INPUT:-data/videos/*.tif}' matches no file or folder (from $PWD): nothing submitted" >&2
    exit 2
  fi
fi

previous=""
for stage in $stages; do
  [ -f "$here/$stage.sbatch" ] || { echo "unknown stage '$stage' (simulate train track infer)" >&2; exit 2; }
  dependency=()
  [ -n "$previous" ] && dependency=(--dependency="afterok:$previous")
  [ -n "$previous" ] && dependency+=(--kill-on-invalid-dep=yes)
  stage_args=SBATCH_ARGS_${stage^^}
  # shellcheck disable=SC2086  # SBATCH_ARGS are lists of options
  previous=$(sbatch --parsable "${dependency[@]}" ${SBATCH_ARGS:-} ${!stage_args:-} "$here/$stage.sbatch")
  previous=${previous%%;*}
  echo "$stage $previous"
  if [ "$stage" = infer ]; then  # one set of tables for the whole array, once every task succeeded
    # shellcheck disable=SC2086
    merge=$(sbatch --parsable --dependency="afterok:$previous" --kill-on-invalid-dep=yes ${SBATCH_ARGS:-} \
      ${SBATCH_ARGS_MERGE:-} "$here/merge.sbatch")
    echo "merge ${merge%%;*}"
  fi
done
