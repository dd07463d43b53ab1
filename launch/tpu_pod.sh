#!/usr/bin/env bash
# Run an r2r command on every host of a Cloud TPU slice with gcloud.
#
#   launch/tpu_pod.sh [--dry-run] ACTION [options] [-- COMMAND [ARGS...]]
#
# ACTION: create | setup | run | logs | delete | all (create, setup, run, logs, then delete even on failure)
# options:
#   --name NAME          TPU VM name (default r2r-<type>)
#   --zone ZONE          e.g. us-east5-a (or CLOUDSDK_COMPUTE_ZONE)
#   --project PROJECT    (or the gcloud default)
#   --type TYPE          accelerator type: v5p-8, v6e-8, v5litepod-16, ... (default v5p-8)
#   --version VERSION    TPU software version (default: by TPU generation)
#   --spot               create a Spot VM
#   --repo URL --ref REF code to check out on every host (default: this checkout's origin and commit)
#   --dir DIR            checkout folder on the hosts (default r2r-jax)
#   --logs DIR           where `logs` gathers each worker's log and environment (default logs/<name>)
# COMMAND runs on every worker from DIR, default: .venv/bin/r2r train --config configs/llama3_1_8b_v5p8.yaml
# R2R_DISTRIBUTED=1 asks r2r to call jax.distributed.initialize(), which finds the other hosts of the slice
# from the TPU VM metadata. Keep output_dir on storage every host sees (gs://...).
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

dry_run=0
action=""
name=""
zone="${CLOUDSDK_COMPUTE_ZONE:-}"
project=""
type="v5p-8"
version=""
spot=0
repo=""
ref=""
dir="r2r-jax"
logs=""
command=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --name) name="$2"; shift ;;
    --zone) zone="$2"; shift ;;
    --project) project="$2"; shift ;;
    --type) type="$2"; shift ;;
    --version) version="$2"; shift ;;
    --spot) spot=1 ;;
    --repo) repo="$2"; shift ;;
    --ref) ref="$2"; shift ;;
    --dir) dir="$2"; shift ;;
    --logs) logs="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; command=("$@"); break ;;
    create|setup|run|logs|delete|all) action="$1" ;;
    *) echo "tpu_pod.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$action" ]]; then
  echo "tpu_pod.sh: no action (create, setup, run, logs, delete or all)" >&2
  exit 2
fi
if [[ -z "$zone" ]]; then
  echo "tpu_pod.sh: --zone is required (or set CLOUDSDK_COMPUTE_ZONE)" >&2
  exit 2
fi
name="${name:-r2r-${type}}"
logs="${logs:-logs/${name}}"
if [[ ${#command[@]} -eq 0 ]]; then
  command=(.venv/bin/r2r train --config configs/llama3_1_8b_v5p8.yaml)
fi
if [[ -z "$repo" ]]; then
  repo="$(git config --get remote.origin.url 2>/dev/null || echo "https://github.com/OWNER/r2r-jax.git")"
fi
if [[ -z "$ref" ]]; then
  ref="$(git rev-parse HEAD 2>/dev/null || echo main)"
fi

# hosts in the slice: v5p-N has N/2 chips, v5e/v6e-N has N; multi-host slices have 4 chips per host,
# single-host v5e/v6e machines up to 8
generation="${type%%-*}"
size="${type##*-}"
case "$generation" in
  v5p|v4) chips=$(( size / 2 )); per_host=4 ;;
  v5litepod|v5e|v6e) chips=$size; per_host=$(( size <= 8 ? 8 : 4 )) ;;
  *) echo "tpu_pod.sh: unknown accelerator type $type" >&2; exit 2 ;;
esac
workers=$(( chips <= per_host ? 1 : chips / per_host ))
if [[ -z "$version" ]]; then
  case "$generation" in
    v5p) version="v2-alpha-tpuv5" ;;
    v5litepod|v5e) version="v2-alpha-tpuv5-lite" ;;
    v6e) version="v2-alpha-tpuv6e" ;;
    *) version="tpu-ubuntu2204-base" ;;
  esac
fi

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone "$zone")
[[ -n "$project" ]] && where+=(--project "$project")

# one word as a shell would need it written: bare when safe, else in single quotes
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# run (or, with --dry-run, print) one command
do_run() {
  if [[ "$dry_run" == 1 ]]; then
    local first=1 word
    for word in "$@"; do
      [[ "$first" == 1 ]] || printf ' '
      quote "$word"
      first=0
    done
    echo
  else
    "$@"
  fi
}

# a shell line for the workers, quoted once for ssh --command
remote() {
  do_run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$1"
}

create() {
  local extra=()
  [[ "$spot" == 1 ]] && extra+=(--spot)
  do_run "${gcloud_tpu[@]}" create "$name" "${where[@]}" --accelerator-type "$type" --version "$version" \
    "${extra[@]}"
}

setup() {
  local q_repo q_ref q_dir
  q_repo=$(printf '%q' "$repo")
  q_ref=$(printf '%q' "$ref")
  q_dir=$(printf '%q' "$dir")
  remote "set -e; [ -d $q_dir ] || git clone $q_repo $q_dir; cd $q_dir; git fetch --all -q; git checkout -q $q_ref; \
python3 -m venv .venv; .venv/bin/pip install -q -U pip; .venv/bin/pip install -q -e '.[tpu]'"
}

run_command() {
  local q_dir q_cmd
  q_dir=$(printf '%q' "$dir")
  q_cmd=$(printf '%q ' "${command[@]}")
  q_cmd="${q_cmd% }"
  # every worker records its environment, then runs the same command and keeps its own log
  remote "cd $q_dir && mkdir -p logs && h=\$(hostname) && \
{ date -u; env | grep -E '^(TPU|JAX|XLA|LIBTPU|R2R)' | sort; git rev-parse HEAD; .venv/bin/pip freeze; } \
> logs/env-\$h.txt 2>&1 && R2R_DISTRIBUTED=1 $q_cmd 2>&1 | tee logs/run-\$h.log; exit \${PIPESTATUS[0]}"
}

gather_logs() {
  do_run mkdir -p "$logs"
  local w
  for (( w = 0; w < workers; w++ )); do
    do_run "${gcloud_tpu[@]}" scp "${where[@]}" --worker="$w" --recurse "${name}:${dir}/logs" "${logs}/worker-${w}"
  done
}

delete() {
  do_run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
}

case "$action" in
  create) create ;;
  setup) setup ;;
  run) run_command ;;
  logs) gather_logs ;;
  delete) delete ;;
  all)
    create
    trap delete EXIT  # never leave a slice running after a failure
    setup
    status=0
    run_command || status=$?
    gather_logs || true
    exit "$status"
    ;;
esac
