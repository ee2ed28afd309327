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
# Debian's chromium runs the console's browser tests (tests/e2e/test_console.py, driven by the
# playwright package of the dev extra; no browser download). Installed once, when missing, as root.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the console's browser tests (apt-get, first run only)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
      || echo "warning: apt-get could not install chromium; tests/e2e/test_console.py will be skipped" >&2
  else
    echo "warning: /usr/bin/chromium is missing (install it: sudo apt-get install chromium); tests/e2e/test_console.py will be skipped" >&2
  fi
fi
.venv/bin/robolake stack build --all
echo "== ruff"; .venv/bin/ruff check src tests; .venv/bin/ruff format --check --quiet src tests download_umi_data.py aistor
echo "== mypy"; .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports --no-cache
echo "== pytest"; exec .venv/bin/pytest "${parallel[@]}" "$@"
