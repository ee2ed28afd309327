#!/usr/bin/env bash
# Bring up robolake's local stack: a 3-node erasure-coded MinIO cluster and lakeFS.
# Runs natively (no Docker engine needed); uses Docker Compose when an engine answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/lib/venv.sh

usage() {
  cat <<'USAGE'
Usage: ./deploy-local.sh [up|down|status|env|logs] [--runtime native|docker] [--volumes] [--no-sample]

  up       (default) create .venv/, build or reuse the MinIO and lakeFS binaries, start the stack,
           then the main job on it: generate a small sample UMI dataset (seed 7, 4 episodes),
           upload it verified into umi-raw, commit it to lakeFS (robotics-data, main,
           datasets/sample) and print the small-file benchmark table. Running it again starts
           only what is missing and changes nothing in the lake (no object rewritten, no new
           commit; the benchmark of the first run is shown again).
           --no-sample: only the stack.
  down     stop every process of the stack; data is kept (add --volumes to delete it too).
  status   show each component's health (exit code 0 when all are healthy).
  env      print `export` lines for aws-cli, mc, boto3 and lakectl: eval "$(./deploy-local.sh env)"
  logs     show the servers' logs (native runtime).

  --runtime native   run the servers as local processes (default when no Docker engine answers)
  --runtime docker   use docker-compose.local.yml (default when `docker info` answers): builds the
                     images first (robolake stack images; no registry needed), then up, setup, main job

Settings: ROBOLAKE_STATE_DIR (where all data lives, default ~/.local/state/robolake),
ROBOLAKE_MINIO_PORTS (9001,9002,9003), ROBOLAKE_MINIO_CONSOLE_PORTS (9091,9092,9093),
ROBOLAKE_LAKEFS_PORT (8000), MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (also read from .env).
USAGE
}

command="up" runtime="" volumes="" sample=1
while [ $# -gt 0 ]; do
  case "$1" in
    up|down|status|env|logs) command="$1" ;;
    --runtime) [ $# -ge 2 ] || die "--runtime needs a value: native or docker"; runtime="$2"; shift ;;
    --runtime=*) runtime="${1#--runtime=}" ;;
    --volumes) volumes="--volumes" ;;
    --no-sample) sample="" ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
case "$runtime" in
  "") if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then runtime=docker; else runtime=native; fi ;;
  native|docker) ;;
  *) die "--runtime '$runtime' is not a runtime: use native or docker" ;;
esac

ensure_venv
robolake=.venv/bin/robolake

# The main job, on either runtime: a sample dataset uploaded verified and committed, then the
# small-file benchmark (the first run's table is shown again on later runs).
main_job() {
  local dir="${ROBOLAKE_SAMPLE_DIR:-umi_data/sample}" report
  echo "== main job: sample dataset in $dir -> umi-raw, lakeFS robotics-data/main/datasets/sample"
  .venv/bin/python download_umi_data.py --generate --upload --experiments --profile tiny --episodes 4 \
    --seed 7 --out "$dir" --name sample
  "$robolake" version put "$dir" --branch main --prefix datasets/sample --name sample --if-changed \
    --meta generator_seed=7 --meta profile=tiny --meta episodes=4
  report="$dir.small-file-benchmark.txt"
  if [ -s "$report" ]; then
    echo "== small-file benchmark (first run; rerun: .venv/bin/python download_umi_data.py --benchmark small_file_performance)"
    cat "$report"
  else
    echo "== small-file benchmark (smoke size)"
    .venv/bin/python download_umi_data.py --benchmark small_file_performance --smoke | tee "$report.partial"
    mv "$report.partial" "$report"
  fi
}

if [ "$runtime" = docker ]; then
  command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 \
    || die "--runtime docker: no Docker engine answers 'docker info'; start it, or use --runtime native"
  if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)  # Compose v1: the only one Debian 12 packages
  else
    die "--runtime docker: neither 'docker compose' nor 'docker-compose' runs; install one (./install-docker.sh), or use --runtime native"
  fi
  echo "using ${compose[*]} $("${compose[@]}" version --short 2>/dev/null)" >&2  # stderr: keeps 'env' eval-able
  compose+=(-f docker-compose.local.yml)
  # The native runtime's port settings move the published ports too (the compose file takes one
  # variable per port).
  IFS=, read -r ROBOLAKE_MINIO1_PORT ROBOLAKE_MINIO2_PORT ROBOLAKE_MINIO3_PORT <<<"${ROBOLAKE_MINIO_PORTS:-9001,9002,9003}"
  IFS=, read -r ROBOLAKE_MINIO1_CONSOLE_PORT ROBOLAKE_MINIO2_CONSOLE_PORT ROBOLAKE_MINIO3_CONSOLE_PORT \
    <<<"${ROBOLAKE_MINIO_CONSOLE_PORTS:-9091,9092,9093}"
  export ROBOLAKE_MINIO1_PORT ROBOLAKE_MINIO2_PORT ROBOLAKE_MINIO3_PORT
  export ROBOLAKE_MINIO1_CONSOLE_PORT ROBOLAKE_MINIO2_CONSOLE_PORT ROBOLAKE_MINIO3_CONSOLE_PORT
  stack_env() { "$robolake" stack env --compose docker-compose.local.yml; }
  case "$command" in
    up)
      ensure_go  # the images take this machine's builds of MinIO, lakeFS and Prometheus
      "$robolake" stack images
      "${compose[@]}" up -d
      # The one-shot setup container: buckets, notifications, lakeFS admin and repository, the hook.
      setup_id=$("${compose[@]}" ps -q setup)
      [ -n "$setup_id" ] || die "Compose started no setup container; see: ${compose[*]} ps"
      code=$(docker wait "$setup_id")
      if [ "$code" != 0 ]; then
        "${compose[@]}" logs --tail 40 setup >&2
        die "the setup container exited with $code (its log is above); fix that and run ./deploy-local.sh --runtime docker again"
      fi
      "${compose[@]}" ps
      eval "$(stack_env)"
      if [ -n "$sample" ]; then main_job; fi
      cat <<'NEXT'

Next steps:
  ./deploy-local.sh status --runtime docker                   # health of every component
  eval "$(./deploy-local.sh env --runtime docker)"            # point aws-cli, mc, boto3, lakectl and robolake at it
  ./deploy-local.sh down --runtime docker                     # stop it (data is kept; --volumes deletes it)
NEXT
      ;;
    down) "${compose[@]}" down $volumes ;;
    # The native state directory knows nothing of the containers: ask Compose, then probe the
    # published endpoints.
    status)
      "${compose[@]}" ps
      eval "$(stack_env)"
      exec .venv/bin/python -c '
import sys
from robolake.config import Settings
from robolake.stack import health
s = Settings.load()
probes = [(f"minio{i}", url, health.minio_cluster_ok) for i, url in enumerate(s.minio_endpoints, start=1)]
probes += [("accelerator", s.accelerator_admin_endpoint, health.accelerator_healthy),
           ("lakefs", s.lakefs_endpoint, health.lakefs_healthy)]
healthy = True
for name, url, probe in probes:
    ok = probe(url)
    healthy = healthy and ok
    state = "healthy" if ok else "NOT HEALTHY"
    print(f"{name:<12} {url:<23} {state}")
sys.exit(0 if healthy else 1)' ;;
    logs) exec "${compose[@]}" logs --tail 100 ;;
    # The credentials Compose substitutes: the shell environment, else ./.env, else the
    # ${NAME:-default} in docker-compose.local.yml.
    env) stack_env ;;
  esac
  exit 0
fi

ensure_go  # the native runtime builds MinIO and lakeFS

case "$command" in
  up)
    "$robolake" stack up
    if [ -n "$sample" ]; then main_job; fi
    cat <<'NEXT'

Next steps:
  .venv/bin/robolake stack status          # health of every component
  eval "$(.venv/bin/robolake stack env)"   # point aws-cli, mc, boto3 and lakectl at the stack
  ./deploy-local.sh down                   # stop it (data is kept; --volumes deletes it)
NEXT
    ;;
  down) exec "$robolake" stack down $volumes ;;
  status) exec "$robolake" stack status ;;
  env) exec "$robolake" stack env ;;
  logs) exec "$robolake" stack logs ;;
esac
