#!/usr/bin/env bash
# Build the latticehub single-user image with no registry and no index inside the build.
#
#   images/build.sh [--force]
#
# 1. base image: Debian bookworm made with debootstrap and `docker import`
#    (latticehub/base:bookworm), made once and kept;
# 2. wheelhouse: `pip download` on the host for the image's Python (3.11.2,
#    manylinux x86_64) plus a wheel of this repository;
# 3. `docker build` with BASE_IMAGE set to the local base.
# The image is labelled with a hash of its inputs and is rebuilt only when they change.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
IMAGE="${LATTICEHUB_IMAGE:-latticehub/singleuser:latest}"
BASE="${LATTICEHUB_BASE_IMAGE:-latticehub/base:bookworm}"
CACHE="${LATTICEHUB_CACHE:-/var/cache/latticehub}"
# the Debian mirror this host's apt uses (debootstrap needs one)
apt_mirror() {
    local found
    found="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    if [[ -z "$found" ]]; then
        found="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    echo "$found"
}
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"
PYTHON="${PYTHON:-python3}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[images] %s\n' "$*" >&2; }

command -v docker >/dev/null || { log "docker CLI missing: run scripts/services.sh first"; exit 1; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers: run scripts/services.sh first"; exit 1; }

# Inputs of the image: the Dockerfile, pinned requirements and the sources that go into
# the wheel and run in a notebook: flows, widgets and the modules of latticehub they import
# (latticehub/client/, and the old hub_ext.experiments.client path that notebooks may
# still import). Spawner and service code do not
# change the image.
CLIENT_FILES=(latticehub/__init__.py latticehub/_moved.py latticehub/columnar.py latticehub/client
    latticehub/thinning.py
    hub_ext/__init__.py hub_ext/experiments/__init__.py hub_ext/experiments/client.py
    hub_ext/experiments/environment.py hub_ext/experiments/spool.py)
inputs_hash() {
    (cd "$ROOT" && find images/singleuser setup.py flows widgets "${CLIENT_FILES[@]}" -type f \
        -not -path '*/__pycache__/*' -not -path 'images/singleuser/wheelhouse/*' -print0 \
        | sort -z | xargs -0 sha256sum; echo "$BASE") | sha256sum | cut -c1-16
}

make_base() {
    if docker image inspect "$BASE" >/dev/null 2>&1; then
        log "base $BASE present"
        return
    fi
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install -y debootstrap"; exit 1; }
    [[ -n "$MIRROR" ]] || { log "no Debian mirror found in apt's sources: set DEBIAN_MIRROR"; exit 1; }
    local dir="$CACHE/rootfs-bookworm"
    rm -rf "$dir"; mkdir -p "$dir"
    log "debootstrap bookworm into $dir (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini \
        bookworm "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$dir"
    log "base $BASE imported"
}

fill_wheelhouse() {
    local wh="$HERE/singleuser/wheelhouse"
    mkdir -p "$wh" "$CACHE/wheels"
    log "downloading wheels for Python 3.11.2 manylinux x86_64 (cached in $CACHE/wheels)"
    "$PYTHON" -m pip download --quiet --dest "$CACHE/wheels" --only-binary=:all: \
        --python-version 3.11.2 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform linux_x86_64 --platform any \
        -r "$HERE/singleuser/requirements.txt" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    [[ -n "$(ls "$CACHE/wheels"/torch-*.whl 2>/dev/null)" ]] \
        || { log "pip download failed: no torch wheel in $CACHE/wheels"; exit 1; }
    rm -f "$wh"/*.whl
    cp -l "$CACHE/wheels"/*.whl "$wh"/ 2>/dev/null || cp "$CACHE/wheels"/*.whl "$wh"/
    log "building the latticehub wheel"
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$wh" "$ROOT" 2>&1 \
        | grep -v '^WARNING: Location' >&2 || true
    ls "$wh"/latticehub-*.whl >/dev/null 2>&1 || { log "building the latticehub wheel failed"; exit 1; }
}

main() {
    local want have
    want="$(inputs_hash)"
    have="$(docker image inspect -f '{{ index .Config.Labels "latticehub.inputs" }}' "$IMAGE" 2>/dev/null || true)"
    if [[ "$FORCE" == 0 && "$have" == "$want" ]]; then
        log "$IMAGE is up to date (inputs $want)"
        return
    fi
    make_base
    fill_wheelhouse
    log "docker build $IMAGE (inputs $want)"
    docker build --quiet --build-arg "BASE_IMAGE=$BASE" --label "latticehub.inputs=$want" \
        -t "$IMAGE" "$HERE/singleuser" >/dev/null
    rm -f "$HERE/singleuser/wheelhouse"/*.whl
    log "built $IMAGE"
}

main "$@"
