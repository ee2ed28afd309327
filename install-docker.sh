#!/usr/bin/env bash
# Install Docker Engine and Docker Compose on Debian or Ubuntu from the distribution's own
# packages, start the daemon and prove that `docker info` answers. robolake does not need Docker:
# ./deploy-local.sh runs the same stack natively; this is only for the Compose runtime.
set -euo pipefail

# Tests point this at a fake filesystem root to exercise the container checks below.
FS_ROOT="${INSTALL_DOCKER_FS_ROOT:-}"
NATIVE="use ./deploy-local.sh, which runs the stack natively without Docker"
sudo=()  # becomes (sudo) when not root

usage() {
  cat <<'USAGE'
Usage: ./install-docker.sh [--check] [--help]

Installs Docker Engine (package docker.io) and Docker Compose from your distribution's apt
packages, starts the Docker daemon and checks that `docker info` answers. Needs Debian or Ubuntu,
root (run it as root or with sudo) and a machine where a daemon can run (not an unprivileged
container). Where it cannot work it says why in one line and exits non-zero.

  --check   change nothing: report whether Docker already works (exit 0), what would be
            installed (exit 3), or why it cannot work here (exit 1)
  --help    show this text

The Compose package differs by distribution; the script asks apt-cache which one exists:
docker-compose-v2 (Ubuntu), docker-compose-plugin (Docker's own apt repository, if you added
it) or docker-compose (Debian; on Debian 12 that is the older Compose v1, 1.29, which reads
robolake's compose files too: run `docker-compose -f docker-compose.local.yml up -d --build`).

No Docker? ./deploy-local.sh runs the same stack natively.
USAGE
}

fail() { echo "install-docker.sh: $*" >&2; exit 1; }

check_only=""
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-docker.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

has() { command -v "$1" >/dev/null 2>&1; }

engine_answers() {
  has docker || return 1
  if has timeout; then "${sudo[@]}" timeout 15 docker info >/dev/null 2>&1
  else "${sudo[@]}" docker info >/dev/null 2>&1
  fi
}

compose_cmd() {
  if has docker && docker compose version >/dev/null 2>&1; then echo "docker compose"
  elif has docker-compose; then echo "docker-compose"
  fi
}

# The Docker daemon needs CAP_SYS_ADMIN (mounts, cgroups, namespaces); an ordinary container lacks it.
in_unprivileged_container() {
  [ -e "$FS_ROOT/.dockerenv" ] || [ -e "$FS_ROOT/run/.containerenv" ] || [ -n "${container:-}" ] || return 1
  local key value
  [ -r "$FS_ROOT/proc/self/status" ] || return 0
  while read -r key value; do
    if [ "$key" = "CapEff:" ]; then
      (( (16#$value >> 21) & 1 )) && return 1
      return 0
    fi
  done < "$FS_ROOT/proc/self/status"
  return 0
}

# The version apt would install, or nothing when the package is unknown.
candidate() {
  local key value
  while read -r key value; do
    if [ "$key" = "Candidate:" ] && [ "$value" != "(none)" ]; then echo "$value"; return; fi
  done < <(apt-cache policy "$1" 2>/dev/null)
}

compose_package() {
  local pkg
  for pkg in docker-compose-v2 docker-compose-plugin docker-compose; do
    if [ -n "$(candidate "$pkg")" ]; then echo "$pkg"; return; fi
  done
}

# ---- can it work here? (bash built-ins and PATH look-ups only, nothing is changed) ----------

case "${OSTYPE:-}" in
  linux*) ;;
  *) fail "this installs Docker on Debian/Ubuntu Linux only (this is ${OSTYPE:-unknown}); install Docker Desktop yourself, or $NATIVE" ;;
esac

if engine_answers && [ -n "$(compose_cmd)" ]; then
  echo "Docker already works: \`docker info\` answers and Compose runs as '$(compose_cmd)'; nothing to install."
  exit 0
fi

if ! has apt-get || ! has apt-cache; then
  fail "no apt-get here: this script supports Debian and Ubuntu only; install Docker Engine and Compose with your system's package manager, or $NATIVE"
fi
if in_unprivileged_container; then
  fail "running inside a container without privileges: a Docker daemon cannot start here; run this on the host (or in a --privileged container), or $NATIVE"
fi

if [ "${EUID:-$(id -u)}" -ne 0 ]; then
  has sudo || fail "installing packages needs root: run it as root or with sudo, or $NATIVE"
  sudo=(sudo)
fi

packages=()
has dockerd || packages+=(docker.io)

if [ -n "$check_only" ]; then
  compose_pkg=""
  [ -n "$(compose_cmd)" ] || compose_pkg="$(compose_package)"
  [ -n "$compose_pkg" ] && packages+=("$compose_pkg")
  [ -n "$(compose_cmd)" ] || [ -n "$compose_pkg" ] \
    || packages+=("a Compose package (unknown until \`apt-get update\`, which a real run does first)")
  echo "Docker is not working yet; ./install-docker.sh would install: ${packages[*]:-nothing (it would start the daemon)}"
  exit 3
fi

# ---- install, start, verify ----------------------------------------------------------------

echo "updating the package lists"
"${sudo[@]}" apt-get update -q
if [ -z "$(compose_cmd)" ]; then
  compose_pkg="$(compose_package)"
  [ -n "$compose_pkg" ] \
    || fail "apt knows no Compose package (tried docker-compose-v2, docker-compose-plugin, docker-compose); install Compose by hand, or $NATIVE"
  packages+=("$compose_pkg")
fi
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing ${packages[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
fi

if [ -d /run/systemd/system ]; then
  "${sudo[@]}" systemctl enable --now docker || true
elif has service; then
  "${sudo[@]}" service docker start || true
fi

for _ in $(seq 1 30); do
  engine_answers && break
  sleep 1
done
if ! engine_answers; then
  reason="$("${sudo[@]}" docker info 2>&1 | tail -n 1 || true)"
  fail "Docker is installed but the daemon does not answer \`docker info\` (${reason:-no output}); see \`journalctl -u docker\` or start \`dockerd\` by hand to read why, or $NATIVE"
fi
compose="$(compose_cmd)"
[ -n "$compose" ] || fail "Docker Engine works but neither \`docker compose\` nor \`docker-compose\` runs; install a Compose package, or $NATIVE"

if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  "${sudo[@]}" usermod -aG docker "$SUDO_USER"
  echo "added $SUDO_USER to the docker group: log out and in again to use docker without sudo"
fi
echo "Docker works: $(docker --version); Compose: $($compose version 2>/dev/null | head -n 1)"
echo "Next: $compose -f docker-compose.local.yml up -d --build   (the first build of MinIO takes minutes)"
