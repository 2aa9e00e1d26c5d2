#!/usr/bin/env bash
# Install (Debian packages, npm, pip; as root) and start what latticehub needs, idempotently.
#
#   scripts/services.sh [all|install|start|python|image|status]
#
# all (default) = install + python + start + image. Safe to run again: present packages are
# not reinstalled and running daemons are left alone. Each step says what is missing and how
# to fix it when it cannot be done (e.g. not root, no Docker engine possible).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${LATTICEHUB_VENV:-$ROOT/.venv}"
TORCH_VERSION="${LATTICEHUB_TORCH_VERSION:-2.13.0}"
STATE="${LATTICEHUB_STATE:-/var/lib/latticehub}"
LOGS="${LATTICEHUB_LOGS:-/var/log/latticehub}"
NETWORK="${LATTICEHUB_NETWORK:-latticehub}"
PG_PORT="${LATTICEHUB_PG_PORT:-5432}"
APT_PACKAGES=(docker.io debootstrap postgresql ca-certificates iptables)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
    [[ "$(id -u)" == 0 ]] || die "$1 needs root: run 'sudo $0 $2' (or install it yourself)"
}

install_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        need_root "installing ${missing[*]}" install
        log "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v configurable-http-proxy >/dev/null; then
        command -v npm >/dev/null || die "npm is missing: apt-get install -y npm"
        log "npm install -g configurable-http-proxy"
        npm install -g --silent configurable-http-proxy@5 >/dev/null
    fi
}

python_env() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.latticehub-installed"
    if [[ ! -f "$stamp" || "$ROOT/setup.py" -nt "$stamp" ]]; then
        log "pip install torch==2.13.0 (the CPU build on this machine's disk), then -e .[test,train]"
        "$VENV/bin/pip" install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
        # Pin torch first: an unpinned torch would resolve to a multi-GB CUDA build.
        "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/pip" install --quiet -e "$ROOT[test,train]" 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/python" -c "import spawner, hub_ext, widgets, flows, torch" \
            || die "pip install -e .[test,train] failed"
        touch "$stamp"
    fi
}

start_docker() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    need_root "starting dockerd" start
    command -v dockerd >/dev/null || die "dockerd missing: apt-get install -y docker.io"
    mkdir -p "$LOGS"
    log "starting dockerd (log: $LOGS/dockerd.log)"
    nohup dockerd >"$LOGS/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || {
        tail -20 "$LOGS/dockerd.log" >&2
        die "no Docker engine could be started (see $LOGS/dockerd.log); the spawner needs one"
    }
}

start_network() {
    docker network inspect "$NETWORK" >/dev/null 2>&1 \
        || docker network create --driver bridge "$NETWORK" >/dev/null
}

start_postgres() {
    command -v pg_lsclusters >/dev/null || return 0
    if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
        need_root "starting PostgreSQL" start
        local cluster
        cluster="$(pg_lsclusters -h | awk '{print $1" "$2; exit}')"
        [[ -n "$cluster" ]] || die "no PostgreSQL cluster: pg_createcluster 15 main"
        log "starting PostgreSQL $cluster"
        # shellcheck disable=SC2086
        pg_ctlcluster $cluster start
    fi
    # a role and database for the Hub and the tests (local peer/trust over TCP only)
    su postgres -c "psql -p $PG_PORT -tAc \"SELECT 1 FROM pg_roles WHERE rolname='latticehub'\"" \
        | grep -q 1 || su postgres -c "psql -p $PG_PORT -qc \"CREATE ROLE latticehub LOGIN \
CREATEDB PASSWORD 'latticehub'\""
    su postgres -c "psql -p $PG_PORT -tAc \"SELECT 1 FROM pg_database WHERE datname='latticehub'\"" \
        | grep -q 1 || su postgres -c "createdb -p $PG_PORT -O latticehub latticehub"
}

build_image() {
    PYTHON="$VENV/bin/python" "$ROOT/images/build.sh"
}

status() {
    printf 'docker:   %s\n' "$(docker info --format '{{.ServerVersion}}' 2>/dev/null || echo 'not running')"
    printf 'swarm:    %s\n' "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo '-')"
    printf 'chp:      %s\n' "$(command -v configurable-http-proxy || echo missing)"
    printf 'postgres: %s\n' "$(pg_lsclusters -h 2>/dev/null | awk '{print $4}' | head -1 || echo missing)"
    printf 'image:    %s\n' "$(docker image inspect -f '{{.Id}}' latticehub/singleuser:latest 2>/dev/null | cut -c1-19 || echo missing)"
}

case "${1:-all}" in
    install) install_packages ;;
    python) python_env ;;
    start) start_docker; start_network; start_postgres ;;
    image) build_image ;;
    status) status ;;
    all) install_packages; python_env; start_docker; start_network; start_postgres; build_image ;;
    *) die "unknown step '$1': use all, install, python, start, image or status" ;;
esac
