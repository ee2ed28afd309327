#!/usr/bin/env bash
# Bring up robolake's local stack: a 3-node erasure-coded MinIO cluster and lakeFS.
# Runs natively (no Docker engine needed); uses Docker Compose when an engine answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/lib/venv.sh

usage() {
  cat <<'USAGE'
Usage: ./deploy-local.sh [up|down|status|env|logs] [--runtime native|docker] [--volumes]

  up       (default) create .venv/, build or reuse the MinIO and lakeFS binaries, start the stack,
           print its endpoints and next steps. Running it again starts only what is missing.
  down     stop every process of the stack; data is kept (add --volumes to delete it too).
  status   show each component's health (exit code 0 when all are healthy).
  env      print `export` lines for aws-cli, mc, boto3 and lakectl: eval "$(./deploy-local.sh env)"
  logs     show the servers' logs (native runtime).

  --runtime native   run the servers as local processes (default when no Docker engine answers)
  --runtime docker   use docker-compose.local.yml (default when `docker info` answers)

Settings: ROBOLAKE_STATE_DIR (where all data lives, default ~/.local/state/robolake),
ROBOLAKE_MINIO_PORTS (9001,9002,9003), ROBOLAKE_MINIO_CONSOLE_PORTS (9091,9092,9093),
ROBOLAKE_LAKEFS_PORT (8000), MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (also read from .env).
USAGE
}

command="up" runtime="" volumes=""
while [ $# -gt 0 ]; do
  case "$1" in
    up|down|status|env|logs) command="$1" ;;
    --runtime) [ $# -ge 2 ] || die "--runtime needs a value: native or docker"; runtime="$2"; shift ;;
    --runtime=*) runtime="${1#--runtime=}" ;;
    --volumes) volumes="--volumes" ;;
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
ensure_go
robolake=.venv/bin/robolake

if [ "$runtime" = docker ]; then
  command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 \
    || die "--runtime docker: no Docker engine answers 'docker info'; start it, or use --runtime native"
  compose=(docker compose -f docker-compose.local.yml)
  case "$command" in
    up) "${compose[@]}" up -d --build; "${compose[@]}" ps ;;
    down) "${compose[@]}" down $volumes ;;
    status) exec "$robolake" stack status ;;
    logs) exec "${compose[@]}" logs --tail 100 ;;
    env) exec "$robolake" stack env ;;
  esac
  exit 0
fi

case "$command" in
  up)
    "$robolake" stack up
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
