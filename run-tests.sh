#!/usr/bin/env bash
# Run robolake's test suite against real servers: creates .venv/ with the dev tools, builds (or
# reuses) the pinned MinIO, lakeFS, lakectl, Prometheus and warp binaries, then runs ruff, mypy, the import-layer
# contract (pyproject.toml) and pytest. The tests start their own isolated stacks on free ports in a
# temporary directory; your stack is untouched.
# Extra arguments go to pytest, e.g. ./run-tests.sh tests/unit -k config
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/lib/venv.sh

# Two test files at a time (pytest-xdist): most tests wait on servers, so two workers, each with a
# stack of its own, take ~2/3 of the time of one on a 2-core machine. ROBOLAKE_TEST_WORKERS=1 runs
# the files one after another in this process.
workers="${ROBOLAKE_TEST_WORKERS:-2}"
case "$workers" in
  ''|*[!0-9]*|0) die "ROBOLAKE_TEST_WORKERS=$workers: give a number of test workers, 1 or more" ;;
esac
if [ "$workers" = 1 ]; then parallel=(); else parallel=(-n "$workers" --dist loadfile); fi

ensure_venv dev
# The lerobot 0.4.4 virtualenv (tests/sidevenv.py, cached outside the checkout) is made, the first
# time only, while the Go binaries build; the tests that need it wait for it.
side_log="${XDG_CACHE_HOME:-$HOME/.cache}/robolake/venvs/lerobot-build.log"
mkdir -p "$(dirname "$side_log")"
.venv/bin/python -c 'from tests.sidevenv import lerobot_python; lerobot_python()' > "$side_log" 2>&1 &
ensure_go
# Debian packages some tests drive, installed once when missing (as root, with apt-get); without
# them those tests are skipped with the reason. Usage: apt_ensure PROGRAM "what for" PACKAGE...
apt_ensure() {
  local program="$1" why="$2"; shift 2
  command -v "$program" >/dev/null 2>&1 || [ -x "$program" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's $* for $why (apt-get, first run only)" >&2
    { [ -n "${apt_updated:-}" ] || apt-get update -qq; } >&2 && apt_updated=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 \
      || echo "warning: apt-get could not install $*; $why will be skipped" >&2
  else
    echo "warning: $program is missing (install it: sudo apt-get install $*); $why will be skipped" >&2
  fi
}
# chromium: the console's browser tests (tests/e2e/test_console.py, driven by the playwright
# package of the dev extra; no browser download). docker.io, docker-compose and debootstrap: the
# Compose runtime's test (tests/e2e/test_compose_runtime.py starts its own dockerd).
apt_ensure /usr/bin/chromium "the console's browser tests" chromium
apt_ensure dockerd "the Compose runtime's test" docker.io docker-compose debootstrap
# postgresql: lakeFS's database on a cluster's lakeFS host (tests/e2e/test_cluster_hosts.py).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || apt_ensure postgres "the cluster test's lakeFS host" postgresql
.venv/bin/robolake stack build --all
echo "== ruff"; .venv/bin/ruff check src tests; .venv/bin/ruff format --check --quiet src tests download_umi_data.py aistor
echo "== mypy"; .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports --no-cache
echo "== pytest"; exec .venv/bin/pytest "${parallel[@]}" "$@"
