#!/usr/bin/env bash
# Install (Debian packages, npm, pip; as root) and start what latticehub needs, idempotently.
#
#   scripts/services.sh [all|install|start|python|image|status|slurm]
#
# all (default) = install + python + start + image; start also brings up a one-node Slurm
# (munged + slurmctld + slurmd on this host, docs/slurm.md); `slurm` does only that part. Safe to run again: present packages are
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
# local accounts that jobs are submitted as in the slurm tests (`sudo -E -u {username} sbatch`)
read -r -a SLURM_USERS <<<"${LATTICEHUB_SLURM_USERS:-lh-ann lh-bob}"
APT_PACKAGES=(docker.io debootstrap postgresql ca-certificates iptables slurm-wlm munge sudo chromium)

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
        "$VENV/bin/pip" install --quiet -e "$ROOT[test,train,widgets]" 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/python" -c "import spawner, hub_ext, widgets, flows, torch" \
            || die "pip install -e .[test,train,widgets] failed"
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
            down* | drain* | drained*)
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
    start) start_docker; start_network; start_postgres; start_slurm ;;
    slurm) start_slurm ;;
    image) build_image ;;
    status) status ;;
    all) install_packages; python_env; start_docker; start_network; start_postgres; start_slurm
        build_image ;;
    *) die "unknown step '$1': use all, install, python, start, slurm, image or status" ;;
esac
