#!/usr/bin/env bash
# Run latticehub on the embedded defaults (SQLite, local Docker, http://127.0.0.1:8000)
# with the demo groups. Ctrl-C stops the Hub; user servers keep running (cleanup_servers
# is off) and `make up` again picks them up.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${LATTICEHUB_VENV:-$ROOT/.venv}"
cd "$ROOT"

export LATTICEHUB_DEMO=1
export LATTICEHUB_DEMO_PASSWORD="${LATTICEHUB_DEMO_PASSWORD:-$(head -c 9 /dev/urandom | base64 | tr '+/' 'xy')}"
LATTICEHUB_DEMO_SEED_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export LATTICEHUB_DEMO_SEED_TOKEN
URL="${LATTICEHUB_BIND_URL:-http://127.0.0.1:8000}"
# Jobs: in a container from the group's image by default; lqcd may also launch to the one-node
# Slurm that `make services` starts, each job as the user's own local account lh-<user>
# (scripts/services.sh creates them), never as the service's.
export LATTICEHUB_SLURM_PREFIX="${LATTICEHUB_SLURM_PREFIX-sudo -n -u {username}}"
export LATTICEHUB_SYSTEM_USERNAME="${LATTICEHUB_SYSTEM_USERNAME:-lh-{username\}}"
# ... with a Python that those accounts can run: `scripts/services.sh jobpython` makes it (the
# service's own .venv links into /root, which they cannot read)
export LATTICEHUB_JOB_PYTHON="${LATTICEHUB_JOB_PYTHON:-${LATTICEHUB_JOB_VENV:-/opt/latticehub/job-venv}/bin/python}"
[[ -x "$LATTICEHUB_JOB_PYTHON" ]] || echo "[up] warning: $LATTICEHUB_JOB_PYTHON is missing, so \
Slurm jobs cannot start: run scripts/services.sh jobpython (as root)" >&2

"$VENV/bin/jupyterhub" -f "$ROOT/jupyterhub_config.py" &
HUB=$!
trap 'kill $HUB 2>/dev/null || true; wait $HUB 2>/dev/null || true' INT TERM EXIT

for _ in $(seq 1 60); do
    curl -fsS "$URL/hub/api/" >/dev/null 2>&1 && break
    kill -0 $HUB 2>/dev/null || { echo "[up] the Hub exited; see its log above" >&2; exit 1; }
    sleep 1
done
# Fill group "nuclear" (max_servers=1) with frank's server, so that logging in as erin
# shows the refusal a full group gives.
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST \
    -H "Authorization: token $LATTICEHUB_DEMO_SEED_TOKEN" "$URL/hub/api/users/frank/server")"
cat >&2 <<MSG

  latticehub is up: $URL   (password for every demo user: $LATTICEHUB_DEMO_PASSWORD)
  - alice: groups lqcd and nuclear; the spawn form lets her choose the group to charge
  - bob, carol, dave: lqcd (3 servers, 1 per user, 4G / 2 CPUs each); the notebook's
    launcher runs training as a container (executor docker) or on Slurm as lh-<user>
  - erin: nuclear, which frank's server already fills (max_servers=1): her spawn is refused
    (seeding frank's server answered HTTP $code)
  Ctrl-C stops the Hub.

MSG
wait $HUB
