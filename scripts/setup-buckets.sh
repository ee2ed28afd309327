#!/usr/bin/env bash
# Create robolake's buckets (umi-raw, umi-processed, umi-experiments, lakefs-storage) and their
# prefixes on an already running MinIO cluster. Idempotent.
# Usage: scripts/setup-buckets.sh [ENDPOINT_URL]     (default: the local stack's first node)
# Credentials: MINIO_ROOT_USER / MINIO_ROOT_PASSWORD from the environment or .env.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/venv.sh
case "${1:-}" in
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
ensure_venv
exec .venv/bin/robolake buckets setup ${1:+--endpoint "$1"}
