# shellcheck shell=bash
# Sourced by the sbatch templates: how to run the suite (inside the Apptainer image when
# ANOMALOUSNET_SIF names one, else in the current environment) and a Dask cluster inside
# the allocation for the embarrassingly parallel stages.
#
# In the image: `apptainer exec --nv --cleanenv --bind DIRS` (`singularity` where apptainer is
# missing). --cleanenv keeps the host's PYTHONPATH and the like out; the variables the job
# needs inside (SLURM_*, PMI*/PMIX*/OMPI_*, HOROVOD_*, TF_*, DASK_*, OMP_NUM_THREADS,
# CUDA_VISIBLE_DEVICES, ANOMALOUSNET_*) are passed on by name. DIRS: the submit folder,
# ANOMALOUSNET_WORK when it exists, the folders the templates name with an_bind (inputs and outputs) and
# ANOMALOUSNET_BINDS (comma-separated, e.g. /scratch,/project): folders like /data are not
# bound by default.

an_log() { echo "[$(date -u +%FT%TZ) ${SLURM_JOB_ID:-local}] $*"; }

# Where outputs go unless a stage's variables say otherwise: scratch space, not the checkout.
AN_WORK=${ANOMALOUSNET_WORK:-${SCRATCH:-${SLURM_SUBMIT_DIR:-$PWD}}/anomalousnet}
# Logs beside the job's own slurm-*.out, where users look.
AN_LOG_DIR=${SLURM_SUBMIT_DIR:-$PWD}

AN_BINDS=()
# Bind the folder of each path or glob pattern (its longest existing parent) into the image.
an_bind() {
  local p dir
  for p in "$@"; do
    dir=${p%%[*?[]*}  # the part before the first glob character
    [ "$dir" = "$p" ] || dir=$(dirname "$dir.")
    while [ -n "$dir" ] && [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
    AN_BINDS+=("$(cd "${dir:-.}" && pwd -P)")
  done
  an_prefix
}

# AN_PREFIX: what runs a command of the suite (empty without an image).
an_prefix() {
  AN_PREFIX=()
  [ -n "${ANOMALOUSNET_SIF:-}" ] || return 0
  local runner binds extra name
  runner=$(command -v apptainer || command -v singularity) ||
    { an_log "ERROR: ANOMALOUSNET_SIF is set but neither apptainer nor singularity is on PATH"; return 1; }
  binds=("${SLURM_SUBMIT_DIR:-$PWD}" "${AN_BINDS[@]}")
  [ ! -d "$AN_WORK" ] || binds+=("$(cd "$AN_WORK" && pwd -P)")
  IFS=, read -ra extra <<<"${ANOMALOUSNET_BINDS:-}"
  binds+=("${extra[@]}")
  for name in $(compgen -e); do
    case $name in
      SLURM_*|PMI*|OMPI_*|HOROVOD_*|TF_*|DASK_*|OMP_NUM_THREADS|CUDA_VISIBLE_DEVICES|ANOMALOUSNET_*|MPLBACKEND)
        export "APPTAINERENV_$name=${!name}" "SINGULARITYENV_$name=${!name}" ;;
    esac
  done
  mapfile -t binds < <(printf '%s\n' "${binds[@]}" | sed '/^$/d' | sort -u)
  AN_PREFIX=("$runner" exec --nv --cleanenv --bind "$(IFS=,; echo "${binds[*]}")" "$ANOMALOUSNET_SIF")
}
an_prefix

# Run a command of the suite's environment (anomalousnet-batch, horovodrun, dask, ...).
an_run() { "${AN_PREFIX[@]}" "$@"; }

# Start a Dask scheduler on the batch host and one single-threaded worker per task of the
# allocation (srun), and wait until all have joined. Sets AN_SCHEDULER_FILE; stopped on exit.
an_start_dask() {
  local dir=$1
  AN_SCHEDULER_FILE="$dir/.dask-scheduler-${SLURM_JOB_ID:-$$}.json"
  rm -f "$AN_SCHEDULER_FILE"
  # started directly (not through a function) so that $! is the scheduler itself, stopped on exit
  "${AN_PREFIX[@]}" dask scheduler --scheduler-file "$AN_SCHEDULER_FILE" --no-dashboard --port 0 \
    >"$AN_LOG_DIR/dask-scheduler-${SLURM_JOB_ID:-$$}.log" 2>&1 &
  AN_DASK_PIDS=($!)
  for _ in $(seq 120); do [ -s "$AN_SCHEDULER_FILE" ] && break; sleep 1; done
  [ -s "$AN_SCHEDULER_FILE" ] || { an_log "Dask scheduler did not start"; return 1; }
  srun --ntasks="${SLURM_NTASKS:-1}" --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    "${AN_PREFIX[@]}" dask worker --scheduler-file "$AN_SCHEDULER_FILE" --nworkers 1 \
    --nthreads "${SLURM_CPUS_PER_TASK:-1}" --no-dashboard --memory-limit 0 \
    >"$AN_LOG_DIR/dask-workers-${SLURM_JOB_ID:-$$}.log" 2>&1 &
  AN_DASK_PIDS+=($!)
  trap 'kill "${AN_DASK_PIDS[@]}" 2>/dev/null; rm -f "$AN_SCHEDULER_FILE"' EXIT
  an_run python -c "
import sys, distributed
with distributed.Client(scheduler_file=sys.argv[1]) as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=300)
" "$AN_SCHEDULER_FILE" "${SLURM_NTASKS:-1}"
  an_log "Dask cluster up: ${SLURM_NTASKS:-1} workers ($AN_SCHEDULER_FILE)"
}
