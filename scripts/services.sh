#!/usr/bin/env bash
# Install (Debian packages, npm, pip; as root) and start what latticehub needs, idempotently.
#
#   scripts/services.sh [all|install|start|python|jobpython|image|status|slurm]
#
# all (default) = install + python + jobpython + start + image; start also brings up a one-node
# Slurm (munged + slurmctld + slurmd on this host, docs/slurm.md); `slurm` does only that part.
# jobpython makes the Python that Slurm jobs run (/opt/latticehub/job-venv, readable by every
# account; docs/slurm.md "The job environment"). Safe to run again: present packages are
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
SLURM_CONF_DIR=/etc/slurm  # where Debian's Slurm tools look (no SLURM_CONF needed)
SLURM_STATE="$STATE/slurm"
# local accounts that Slurm jobs are submitted as (`sudo -u {username} sbatch`, never -E): the
# tests' lh-ann and lh-bob, and the demo users' lh-<name> (`make up` maps each Hub user to one)
read -r -a SLURM_USERS <<<"${LATTICEHUB_SLURM_USERS:-lh-ann lh-bob lh-alice lh-carol lh-dave lh-erin lh-frank}"
APT_PACKAGES=(docker.io debootstrap postgresql ca-certificates iptables slurm-wlm munge sudo chromium haproxy
    python3-venv)
# The Python of Slurm jobs: Debian's python3 (what batch nodes have), in a venv every account can
# read, never the service's (.venv links into /root/.pyenv, which lh-* accounts cannot read).
# LATTICEHUB_JOB_VENV is a link to $LATTICEHUB_JOB_VENV-<inputs hash>, swapped when rebuilt.
JOB_VENV="${LATTICEHUB_JOB_VENV:-/opt/latticehub/job-venv}"
JOB_BASE_PYTHON="${LATTICEHUB_JOB_BASE_PYTHON:-/usr/bin/python3}"
WHEELS="${LATTICEHUB_CACHE:-/var/cache/latticehub}/wheels"  # images/build.sh fills it too

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
        log "pip install torch==2.13.0 (the CPU build on this machine's disk), then -e .[test,train,widgets]"
        "$VENV/bin/pip" install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
        # Pin torch first: an unpinned torch would resolve to a multi-GB CUDA build.
        "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/pip" install --quiet -e "${ROOT}[test,train,widgets]" 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/python" -c "import latticehub, spawner, hub_ext, widgets, flows, torch" \
            || die "pip install -e .[test,train,widgets] failed"
        touch "$stamp"
    fi
}

# -- The job environment: $JOB_VENV/bin/python for Slurm jobs (LATTICEHUB_JOB_PYTHON) --------
# What `python -m flows.train` imports, installed as copies (not editable): torch (the CPU
# build) and numpy at the single-user image's pins, and a wheel of flows + the tracking client
# (latticehub/client/ and its old hub_ext.experiments.client path, the same list as
# images/build.sh). Wheels come
# from $WHEELS (offline); missing ones are downloaded there as images/build.sh does.
JOB_CLIENT_FILES=(latticehub/__init__.py latticehub/_moved.py latticehub/columnar.py latticehub/client
    hub_ext/__init__.py hub_ext/experiments/__init__.py hub_ext/experiments/client.py
    hub_ext/experiments/environment.py hub_ext/experiments/spool.py)
JOB_RECIPE=2  # bump when job_python changes how the environment is made

job_requirements() {  # torch and numpy pins of the image, one a line
    grep -E '^(torch|numpy)==' "$ROOT/images/singleuser/requirements.txt" \
        | sed "s/^torch==.*/torch==$TORCH_VERSION/"
}

job_inputs_hash() {
    (cd "$ROOT" && find setup.py flows "${JOB_CLIENT_FILES[@]}" -type f \
        -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
        job_requirements
        "$JOB_BASE_PYTHON" -VV 2>&1
        echo "recipe $JOB_RECIPE") | sha256sum | cut -c1-16
}

job_pip() {  # job_pip VENV ARGS...: the venv's pip on the wheel cache and the given links only
    local venv="$1"
    shift
    env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
        PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1 \
        "$venv/bin/python" -m pip "$@" --no-index --find-links "$WHEELS"
}

job_download() {  # fill $WHEELS for Python 3.11.2 manylinux x86_64, like images/build.sh
    local python="python3" log="$1"
    [[ -x "$VENV/bin/python" ]] && python="$VENV/bin/python"
    mkdir -p "$WHEELS"
    local -a reqs
    mapfile -t reqs < <(job_requirements)
    "$python" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
        --python-version 3.11.2 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform linux_x86_64 --platform any \
        "${reqs[@]}" "setuptools>=68" wheel >>"$log" 2>&1
}

job_venv_link() {  # job_venv_link TARGET PREVIOUS: point $JOB_VENV at TARGET, atomically
    local target="$1" previous="$2" old
    [[ -L "$JOB_VENV" || ! -e "$JOB_VENV" ]] || rm -rf "$JOB_VENV"  # a plain directory
    ln -sfn "$(basename "$target")" "$JOB_VENV.link.$$"
    mv -Tf "$JOB_VENV.link.$$" "$JOB_VENV"
    # keep the environment it replaces (jobs may still run in it), remove older ones
    for old in "$JOB_VENV"-????????????????; do
        [[ -d "$old" && "$old" != "$target" && "$(basename "$old")" != "$previous" ]] || continue
        log "jobpython: removing the old $old"
        rm -rf "$old"
    done
}

job_python() {
    local want target current
    want="$(job_inputs_hash)"
    target="$JOB_VENV-$want"
    current="$(readlink "$JOB_VENV" 2>/dev/null || true)"
    if [[ "$current" == "$(basename "$target")" && -f "$target/.latticehub-inputs" \
        && -x "$JOB_VENV/bin/python" ]]; then
        log "jobpython: $JOB_VENV is up to date (inputs $want)"
        return
    fi
    need_root "making the job environment $JOB_VENV" jobpython
    if [[ -f "$target/.latticehub-inputs" ]]; then  # built before (e.g. on another branch)
        log "jobpython: $JOB_VENV -> $(basename "$target") (built before, inputs $want)"
        job_venv_link "$target" "$current"
        return
    fi
    [[ -x "$JOB_BASE_PYTHON" ]] || die "$JOB_BASE_PYTHON missing: apt-get install -y python3-venv"
    "$JOB_BASE_PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$JOB_BASE_PYTHON has no venv/ensurepip: apt-get install -y python3-venv"
    local started=$SECONDS tmp log="$LOGS/job-venv.log" reqs
    mapfile -t reqs < <(job_requirements)
    ((${#reqs[@]} == 2)) || die "no torch/numpy pins in images/singleuser/requirements.txt"
    mkdir -p "$LOGS"
    : >"$log"
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    log "jobpython: building $target ($("$JOB_BASE_PYTHON" -V 2>&1), ${reqs[*]}, flows and" \
        "the tracking client; log: $log)"
    umask 022
    install -d -m 0755 "$(dirname "$JOB_VENV")"
    rm -rf "$target"
    "$JOB_BASE_PYTHON" -m venv "$target" >>"$log" 2>&1 \
        || { tail -20 "$log" >&2; die "jobpython: $JOB_BASE_PYTHON -m venv $target failed"; }

    # a wheel of flows + the tracking client only, built from a clean copy of those files (no
    # stale build/ of the checkout; nothing in the venv points back at the checkout)
    mkdir -p "$tmp/src" "$tmp/dist"
    (cd "$ROOT" && find setup.py pyproject.toml README.md flows "${JOB_CLIENT_FILES[@]}" -type f \
        -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | xargs -0 cp --parents -t "$tmp/src")
    local attempt
    for attempt in cache download; do
        if [[ "$attempt" == download ]]; then
            log "jobpython: $WHEELS lacks some wheels: downloading them (as images/build.sh does)"
            job_download "$log" || { tail -20 "$log" >&2; die "jobpython: pip download failed \
(no index reachable? fill $WHEELS with images/build.sh, or copy the wheels there)"; }
        fi
        job_pip "$target" install --quiet "${reqs[@]}" >>"$log" 2>&1 \
            && job_pip "$target" wheel --quiet --no-deps --wheel-dir "$tmp/dist" "$tmp/src" \
                >>"$log" 2>&1 \
            && break
        [[ "$attempt" == cache ]] || { tail -20 "$log" >&2; die "jobpython: installing into \
$target failed (see $log)"; }
    done
    # by name from a links directory: a copy, and no direct_url.json naming the temp dir
    job_pip "$target" install --quiet --no-deps --find-links "$tmp/dist" latticehub \
        >>"$log" 2>&1 || { tail -20 "$log" >&2; die "jobpython: installing the wheel failed"; }
    rm -f "$target/bin/latticehub"  # the service's CLI: its modules are not in a job's Python
    chmod -R a+rX,go-w "$target"
    find "$target" -type d -exec chmod 0755 {} +
    # proof that any account can run it: what a tracked flows.train imports, as user nobody,
    # with no module from /root or the checkout
    (cd / && runuser -u nobody -- env -i PATH=/usr/bin:/bin "$target/bin/python" -c '
import sys, flows.train, flows.tracking, latticehub.client, numpy, torch
bad = [m.__file__ for m in list(sys.modules.values())
       if (getattr(m, "__file__", None) or "").startswith(("/root/", sys.argv[1]))]
assert not bad, bad
print("torch", torch.__version__, "numpy", numpy.__version__, "from", sys.prefix)
' "$ROOT/") >>"$log" 2>&1 \
        || { tail -20 "$log" >&2; die "jobpython: $target does not work as user nobody"; }
    echo "$want" >"$target/.latticehub-inputs"
    chmod 0644 "$target/.latticehub-inputs"

    job_venv_link "$target" "$current"
    log "jobpython: $JOB_VENV -> $(basename "$target") ready in $((SECONDS - started)) s" \
        "(LATTICEHUB_JOB_PYTHON=$JOB_VENV/bin/python)"
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
    # the tests drop their databases WITH (FORCE); that must also end an autovacuum worker,
    # which runs as no role and so needs pg_signal_backend (idempotent)
    su postgres -c "psql -p $PG_PORT -qc 'GRANT pg_signal_backend TO latticehub'" >/dev/null
}

# -- Slurm: munged + slurmctld + slurmd on this host, one node, no slurmdbd (docs/slurm.md) --
slurm_users() {
    local user
    for user in "${SLURM_USERS[@]}"; do
        id -u "$user" >/dev/null 2>&1 && continue
        need_root "creating the test user $user" start
        log "useradd $user (a local account to submit Slurm jobs as)"
        useradd --system --create-home --shell /bin/bash "$user" \
            || die "useradd $user failed: create it yourself (useradd -r -m $user)"
    done
}

slurm_munge_key() {
    [[ -s /etc/munge/munge.key ]] && return
    need_root "creating the munge key" start
    log "mungekey -c (a new /etc/munge/munge.key)"
    mungekey --create --keyfile=/etc/munge/munge.key \
        || die "mungekey failed: apt-get install --reinstall munge, or copy your site's munge.key"
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
}

# The memory limit must really kill a job that goes over --mem: cgroup v1 (task/cgroup, the job
# ends OUT_OF_MEMORY) where its memory, freezer and cpuset controllers are mounted and writable,
# else slurmstepd's own polling (jobacct_gather/linux + OverMemoryKill; the job ends FAILED).
# Slurm 22.05's cgroup/v2 needs systemd, so a cgroup-v2-only machine gets polling too.
# LATTICEHUB_SLURM_CGROUP=0|1 forces one or the other.
slurm_memory_mode() {
    case "${LATTICEHUB_SLURM_CGROUP:-auto}" in
        1) echo cgroup; return ;;
        0) echo poll; return ;;
    esac
    local controller probe
    for controller in memory freezer cpuset; do
        probe="/sys/fs/cgroup/$controller/latticehub-probe.$$"
        if ! mkdir "$probe" 2>/dev/null; then
            echo poll
            return
        fi
        rmdir "$probe"
    done
    echo cgroup
}

# slurm.conf/cgroup.conf from scripts/slurm/*.in for this machine; prints "changed" if rewritten
slurm_config() {
    local host cpus mem_mb mode tmp changed=""
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    # a bit below what slurmd measures, or the node drains with "Low RealMemory"
    mem_mb=$((mem_mb - (mem_mb / 20 > 256 ? mem_mb / 20 : 256)))
    mode="$(slurm_memory_mode)"
    local -a subst=(-e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM_MB@|$mem_mb|g"
        -e "s|@STATE@|$SLURM_STATE|g" -e "s|@LOGS@|$LOGS|g")
    if [[ "$mode" == cgroup ]]; then
        subst+=(-e "s|@MEMORY_MODE@|cgroup v1 memory controller: a job over --mem is killed \
by the kernel OOM killer and ends OUT_OF_MEMORY|"
            -e "s|@CGROUP_PLUGIN@|cgroup/v1|" -e "s|@PROCTRACK@|proctrack/cgroup|"
            -e "s|@TASK@|task/cgroup,task/affinity|"
            -e "s|@JOBACCT@|jobacct_gather/cgroup|" -e "s|@JOBACCT_PARAMS@|NoShared|")
    else
        subst+=(-e "s|@MEMORY_MODE@|no cgroup v1 memory controller: slurmstepd polls RSS every \
second and kills a step over --mem (OverMemoryKill)|"
            -e "s|@CGROUP_PLUGIN@|autodetect|" -e "s|@PROCTRACK@|proctrack/linuxproc|"
            -e "s|@TASK@|task/affinity|"
            -e "s|@JOBACCT@|jobacct_gather/linux|" -e "s|@JOBACCT_PARAMS@|OverMemoryKill,NoShared|")
    fi
    mkdir -p "$SLURM_CONF_DIR"
    for name in slurm.conf cgroup.conf; do
        tmp="$(mktemp)"
        sed "${subst[@]}" "$ROOT/scripts/slurm/$name.in" >"$tmp"
        if cmp -s "$tmp" "$SLURM_CONF_DIR/$name"; then
            rm -f "$tmp"
        else
            need_root "writing $SLURM_CONF_DIR/$name" start
            if [[ "$name" == slurm.conf ]]; then
                log "writing $SLURM_CONF_DIR/$name (node $host: $cpus CPUs, $mem_mb MB," \
                    "memory: $mode)"
            else
                log "writing $SLURM_CONF_DIR/$name"
            fi
            install -m 0644 "$tmp" "$SLURM_CONF_DIR/$name"
            rm -f "$tmp"
            changed=changed
        fi
    done
    echo "$changed"
}

slurm_pid_alive() {  # slurm_pid_alive slurmctld|slurmd
    local pid
    pid="$(cat "$LOGS/$1.pid" 2>/dev/null)" || return 1
    # (a daemon whose parent is a PID 1 that does not reap stays behind as a zombie: not alive)
    [[ -n "$pid" && "$(ps -o comm=,stat= -p "$pid" 2>/dev/null)" =~ ^$1\ +[^Z] ]]
}

slurm_foreign() {  # slurm_foreign slurmctld|slurmd: one runs that this script did not start
    ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'
}

slurm_stop() {  # the daemons this script started (by their pid files), before a config change
    local name pid
    for name in slurmd slurmctld; do
        slurm_pid_alive "$name" || continue
        pid="$(cat "$LOGS/$name.pid")"
        log "stopping $name (pid $pid) to load the new configuration"
        kill "$pid"
        for _ in $(seq 1 50); do
            slurm_pid_alive "$name" || break
            sleep 0.2
        done
        if slurm_pid_alive "$name"; then
            die "$name (pid $pid) did not stop: kill it, then run $0 start"
        fi
    done
}

slurm_node_state() {
    sinfo --noheader --Node --nodes="$(hostname -s)" --format='%T' 2>/dev/null | head -1
}

slurm_up() {  # controller answers and the node takes jobs
    scontrol ping 2>/dev/null | grep -q 'is UP' \
        && [[ "$(slurm_node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]
}

start_slurm() {
    if [[ "$(id -u)" != 0 ]] && slurm_up; then
        log "Slurm is up (not root: its configuration is left as it is)"
        return
    fi
    need_root "setting up Slurm" start
    command -v slurmctld >/dev/null && command -v munged >/dev/null \
        || die "Slurm or munge missing: apt-get install -y slurm-wlm munge (or $0 install)"
    slurm_users
    slurm_munge_key
    mkdir -p "$LOGS" "$SLURM_STATE/ctld" "$SLURM_STATE/d"
    chown slurm:slurm "$SLURM_STATE/ctld"
    local changed
    changed="$(slurm_config)"
    if [[ -n "$changed" ]]; then
        slurm_stop
    fi

    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        need_root "starting munged" start
        log "starting munged (as munge; log: /var/log/munge/munged.log)"
        install -d -o munge -g munge -m 0755 /run/munge
        runuser -u munge -- /usr/sbin/munged \
            || die "munged did not start: see /var/log/munge/munged.log (key: /etc/munge/munge.key)"
        for _ in $(seq 1 50); do
            munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
            sleep 0.1
        done
        munge -n | unmunge >/dev/null || die "munge does not answer: see /var/log/munge/munged.log"
    fi

    local name
    for name in slurmctld slurmd; do
        if ! slurm_pid_alive "$name" && slurm_foreign "$name"; then
            log "$name runs but was not started by this script (systemd?): leaving it as it is"
            [[ -z "$changed" ]] || log "to load the new $SLURM_CONF_DIR/slurm.conf: \
systemctl restart slurmctld slurmd (or stop them and run $0 start)"
        fi
    done
    if ! slurm_pid_alive slurmctld && ! slurm_foreign slurmctld; then
        need_root "starting slurmctld" start
        log "starting slurmctld (log: $LOGS/slurmctld.log)"
        # it writes the pid and log files after dropping to SlurmUser=slurm
        touch "$LOGS/slurmctld.log" "$LOGS/slurmctld.pid"
        chown slurm:slurm "$LOGS/slurmctld.log" "$LOGS/slurmctld.pid"
        slurmctld || die "slurmctld did not start: see $LOGS/slurmctld.log"
    fi
    for _ in $(seq 1 100); do
        scontrol ping 2>/dev/null | grep -q 'is UP' && break
        sleep 0.2
    done
    scontrol ping 2>/dev/null | grep -q 'is UP' || {
        tail -20 "$LOGS/slurmctld.log" >&2
        die "slurmctld does not answer (see $LOGS/slurmctld.log; config $SLURM_CONF_DIR/slurm.conf)"
    }

    if ! slurm_pid_alive slurmd && ! slurm_foreign slurmd; then
        need_root "starting slurmd" start
        log "starting slurmd (log: $LOGS/slurmd.log)"
        slurmd || die "slurmd did not start: see $LOGS/slurmd.log"
    fi
    local state="" host
    host="$(hostname -s)"
    for _ in $(seq 1 150); do
        state="$(slurm_node_state)"
        case "$state" in
            idle | mixed | allocated | completing) break ;;
            down* | drain*)
                # ReturnToService=2 covers most restarts; an old DOWN/DRAIN reason needs this
                scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    case "$state" in
        idle | mixed | allocated | completing) ;;
        *)
            tail -20 "$LOGS/slurmd.log" >&2
            sinfo --Node --long >&2 || true
            die "Slurm node $host is '${state:-unknown}', not idle: see $LOGS/slurmd.log and \
'scontrol show node $host' (Reason=)" ;;
    esac
}

slurm_status() {
    if ! scontrol ping 2>/dev/null | grep -q 'is UP'; then
        echo 'not running'
        return
    fi
    local jobs
    jobs="$(squeue --noheader --states=all 2>/dev/null | wc -l)"
    printf '%s, node %s %s, %s jobs known\n' \
        "$(sinfo --version 2>/dev/null | awk '{print $2}')" "$(hostname -s)" \
        "$(sinfo --noheader --Node --format='%T %c CPUs %m MB' 2>/dev/null | head -1)" "$jobs"
}

build_image() {
    PYTHON="$VENV/bin/python" "$ROOT/images/build.sh"
}

status() {
    printf 'docker:   %s\n' "$(docker info --format '{{.ServerVersion}}' 2>/dev/null || echo 'not running')"
    printf 'swarm:    %s\n' "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo '-')"
    printf 'chp:      %s\n' "$(command -v configurable-http-proxy || echo missing)"
    printf 'postgres: %s\n' "$(pg_lsclusters -h 2>/dev/null | awk '{print $4}' | head -1 || echo missing)"
    printf 'slurm:    %s\n' "$(slurm_status)"
    printf 'image:    %s\n' "$(docker image inspect -f '{{.Id}}' latticehub/singleuser:latest 2>/dev/null | cut -c1-19 || echo missing)"
}

case "${1:-all}" in
    install) install_packages ;;
    python) python_env ;;
    jobpython) job_python ;;
    start) start_docker; start_network; start_postgres; start_slurm ;;
    slurm) start_slurm ;;
    image) build_image ;;
    status) status ;;
    all) install_packages; python_env; job_python; start_docker; start_network; start_postgres; start_slurm
        build_image ;;
    *) die "unknown step '$1': use all, install, python, jobpython, start, slurm, image or status" ;;
esac
