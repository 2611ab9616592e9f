# shellcheck shell=bash
# Sourced by the sbatch templates: how to run the suite (inside the Apptainer image when
# ANOMALOUSNET_SIF names one, else in the current environment) and a Dask cluster inside
# the allocation for the embarrassingly parallel stages.

if [ -n "${ANOMALOUSNET_SIF:-}" ]; then
  AN_PREFIX=(apptainer exec --nv "$ANOMALOUSNET_SIF")
else
  AN_PREFIX=()
fi

an_log() { echo "[$(date -u +%FT%TZ) ${SLURM_JOB_ID:-local}] $*"; }

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
    >"$dir/.dask-scheduler-${SLURM_JOB_ID:-$$}.log" 2>&1 &
  AN_DASK_PIDS=($!)
  for _ in $(seq 120); do [ -s "$AN_SCHEDULER_FILE" ] && break; sleep 1; done
  [ -s "$AN_SCHEDULER_FILE" ] || { an_log "Dask scheduler did not start"; return 1; }
  srun --ntasks="${SLURM_NTASKS:-1}" --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    "${AN_PREFIX[@]}" dask worker --scheduler-file "$AN_SCHEDULER_FILE" --nworkers 1 \
    --nthreads "${SLURM_CPUS_PER_TASK:-1}" --no-dashboard --memory-limit 0 \
    >"$dir/.dask-workers-${SLURM_JOB_ID:-$$}.log" 2>&1 &
  AN_DASK_PIDS+=($!)
  trap 'kill "${AN_DASK_PIDS[@]}" 2>/dev/null; rm -f "$AN_SCHEDULER_FILE"' EXIT
  an_run python -c "
import sys, distributed
with distributed.Client(scheduler_file=sys.argv[1]) as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=300)
" "$AN_SCHEDULER_FILE" "${SLURM_NTASKS:-1}"
  an_log "Dask cluster up: ${SLURM_NTASKS:-1} workers ($AN_SCHEDULER_FILE)"
}

# host:slots of every node of the allocation (horovodrun's -H), from SLURM's task layout:
# SLURM_TASKS_PER_NODE is like "2(x3),1" for three nodes with 2 tasks and one with 1.
an_horovod_hosts() {
  local part n r i counts=() nodes=() hosts=()
  IFS=, read -ra parts <<<"${SLURM_TASKS_PER_NODE:-}"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then n=${BASH_REMATCH[1]}; r=${BASH_REMATCH[2]}; else n=$part; r=1; fi
    for ((i = 0; i < r; i++)); do counts+=("$n"); done
  done
  mapfile -t nodes < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null)
  for i in "${!nodes[@]}"; do hosts+=("${nodes[$i]}:${counts[$i]:-1}"); done
  (IFS=,; echo "${hosts[*]}")
}
