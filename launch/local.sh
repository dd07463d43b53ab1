#!/usr/bin/env bash
# Start N cooperating JAX processes on this machine, the way a pod or a cluster would: every process runs
# the same command with R2R_COORDINATOR / R2R_NUM_PROCESSES / R2R_PROCESS_ID set, and
# r2r_jax.parallel.mesh.maybe_initialize_distributed() joins them through jax.distributed on 127.0.0.1.
#
#   launch/local.sh [--dry-run] [-n N] [--port PORT] [--devices-per-process D] [--platform cpu|gpu]
#                   [--log-dir DIR] -- COMMAND [ARGS...]
#
# Example: launch/local.sh -n 4 -- .venv/bin/r2r train --config configs/tiny.yaml --output-dir runs/mh
# Each process writes DIR/process_<i>.log; the exit status is the first non-zero status of any process.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

dry_run=0
num_processes=2
port=12355
devices_per_process=1
platform=cpu
log_dir=logs/local
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    -n|--num-processes) num_processes="$2"; shift ;;
    --port) port="$2"; shift ;;
    --devices-per-process) devices_per_process="$2"; shift ;;
    --platform) platform="$2"; shift ;;
    --log-dir) log_dir="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "local.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [[ $# -eq 0 ]]; then
  echo "local.sh: no command given (put it after --)" >&2
  exit 2
fi
if ! [[ "$num_processes" =~ ^[1-9][0-9]*$ ]]; then
  echo "local.sh: -n needs a positive integer, got $num_processes" >&2
  exit 2
fi

# the environment of process $1, one NAME=VALUE per line
process_env() {
  echo "R2R_COORDINATOR=127.0.0.1:${port}"
  echo "R2R_NUM_PROCESSES=${num_processes}"
  echo "R2R_PROCESS_ID=$1"
  echo "JAX_PLATFORMS=${platform}"
  if [[ "$platform" == cpu ]]; then
    echo "XLA_FLAGS=--xla_force_host_platform_device_count=${devices_per_process}"
  else
    # one GPU per process: process i sees GPUs i*D .. i*D+D-1
    local first=$(( $1 * devices_per_process )) ids="" d
    for (( d = 0; d < devices_per_process; d++ )); do ids+="${ids:+,}$(( first + d ))"; done
    echo "CUDA_VISIBLE_DEVICES=${ids}"
  fi
}

if [[ "$dry_run" == 1 ]]; then
  for (( i = 0; i < num_processes; i++ )); do
    printf 'env'
    while IFS= read -r kv; do printf ' %q' "$kv"; done < <(process_env "$i")
    printf ' %q' "$@"
    printf ' > %q 2>&1 &\n' "${log_dir}/process_${i}.log"
  done
  echo "wait  # exit status: the first non-zero of the ${num_processes} processes"
  exit 0
fi

mkdir -p "$log_dir"
pids=()
for (( i = 0; i < num_processes; i++ )); do
  mapfile -t vars < <(process_env "$i")
  env "${vars[@]}" "$@" > "${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done
# stop the others if this script is interrupted
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for (( i = 0; i < num_processes; i++ )); do
  code=0
  wait "${pids[$i]}" || code=$?
  if [[ "$code" != 0 ]]; then
    echo "local.sh: process $i exited with $code (log: ${log_dir}/process_${i}.log)" >&2
    [[ "$status" == 0 ]] && status=$code
  fi
done
exit "$status"
