#!/usr/bin/env bash
# Installs what is missing (Debian packages, a Python venv) and starts the servers the
# integration tests talk to, all on 127.0.0.1. Writes their addresses to $SERVICES_DIR/env,
# which `cargo xtask test` loads before `cargo test`. Stop them with down.sh.
#
# Each file in up.d/ adds one service; they are sourced in order and may use the helpers below.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export SERVICES_DIR="${SERVICES_DIR:-$root/target/test-services}"
export VENV="${TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/antenna-pipeline/venv}"
# Every port is PORT_BASE + an offset, so that several checkouts can run their services at once.
# Offsets: 1 moto; 2-9 registry and Docker; 10-19 Redis, Celery, Flower; 20-29 EB; 30-39 local target;
# 40-44 RabbitMQ (AMQP, distribution, epmd, AMQPS, CLI); 45-49 NATS (JetStream, no JetStream, password, token, TLS);
# 50 PostgreSQL; 60 moto with IAM enforcement; 70-71 the Antenna-shaped fixture.
export PORT_BASE="${PORT_BASE:-15000}"

"$here/down.sh" >/dev/null 2>&1 || true
rm -rf "$SERVICES_DIR"
mkdir -p "$SERVICES_DIR/pids" "$SERVICES_DIR/logs"
: >"$SERVICES_DIR/env"

log() { echo "services: $*" >&2; }

# apt_install PKG...: installs the Debian packages that are not installed yet.
apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$apt_updated" ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pip_install SPEC...: installs into the shared test venv (created on first use).
pip_install() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating the Python venv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  fi
  local missing=()
  for spec in "$@"; do
    local name=${spec%%[<>=\[]*}
    "$VENV/bin/pip" show -q "$name" >/dev/null 2>&1 || missing+=("$spec")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "pip installing ${missing[*]}"
  "$VENV/bin/pip" install -q "${missing[@]}"
}

# start NAME CMD...: runs CMD in the background, logs to logs/NAME.log, remembers its PID.
start() {
  local name=$1
  shift
  setsid "$@" >"$SERVICES_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$SERVICES_DIR/pids/$name"
}

# wait_port PORT [SECONDS]: waits until 127.0.0.1:PORT accepts connections.
wait_port() {
  local port=$1 limit=${2:-30} i=0
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt $((limit * 10)) ]; then
      log "nothing listens on 127.0.0.1:$port after ${limit}s; last log lines:"
      tail -n 20 "$SERVICES_DIR"/logs/*.log >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

# port OFFSET: prints PORT_BASE + OFFSET.
port() { echo $((PORT_BASE + $1)); }

# export_env KEY VALUE: makes KEY=VALUE visible to the tests.
export_env() {
  printf '%s=%s\n' "$1" "$2" >>"$SERVICES_DIR/env"
  export "$1=$2"
}

export_env SERVICES_DIR "$SERVICES_DIR"
export_env TEST_VENV "$VENV"
for f in "$here"/up.d/*.sh; do
  [ -e "$f" ] || continue
  log "starting $(basename "$f" .sh)"
  # shellcheck source=/dev/null
  source "$f"
done
log "ready; addresses in $SERVICES_DIR/env"
