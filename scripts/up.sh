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
export LATTICEHUB_DEMO_SEED_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
URL="${LATTICEHUB_BIND_URL:-http://127.0.0.1:8000}"

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
  - bob, carol, dave: lqcd (3 servers, 1 per user, 4G / 2 CPUs each)
  - erin: nuclear, which frank's server already fills (max_servers=1): her spawn is refused
    (seeding frank's server answered HTTP $code)
  Ctrl-C stops the Hub.

MSG
wait $HUB
