#!/usr/bin/env bash
# Stops every server that up.sh started (by PID, with its process group).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
SERVICES_DIR="${SERVICES_DIR:-$root/target/test-services}"
[ -d "$SERVICES_DIR/pids" ] || exit 0
# PostgreSQL first, with a fast shutdown (a plain TERM waits for its clients to leave).
if [ -f "$SERVICES_DIR/postgres/data/postmaster.pid" ]; then
  pg_pid=$(head -n 1 "$SERVICES_DIR/postgres/data/postmaster.pid")
  kill -INT "$pg_pid" 2>/dev/null || true
fi
for f in "$SERVICES_DIR"/pids/*; do
  [ -e "$f" ] || continue
  pid=$(cat "$f")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
done
sleep 0.5
for f in "$SERVICES_DIR"/pids/*; do
  [ -e "$f" ] || continue
  pid=$(cat "$f")
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$f"
done
