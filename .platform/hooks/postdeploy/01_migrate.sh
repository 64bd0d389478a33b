#!/usr/bin/env bash
# Runs after the new version's containers have started (unlike container_commands, which run
# before them): apply Django migrations inside the new django container, once per deploy.
#
# Every instance of a load-balanced environment runs its postdeploy hooks, and the platform
# tells a hook nothing about which instance is the leader (`leader_only` exists only for
# container_commands, which run before the new containers). So the migration runs under a
# PostgreSQL advisory lock taken on Django's own connection: the first instance migrates, the
# others wait for the lock, then find nothing left to apply. The lock is a session lock: it is
# released when the migration ends, fails, or its process dies. A database that is not
# PostgreSQL (sqlite in a development settings) is migrated without a lock, with a note.
set -euo pipefail
container=$(docker ps --quiet --filter "label=com.amazonaws.ecs.container-name=django" | head -n 1)
if [ -z "$container" ]; then
  echo "postdeploy: no running django container found" >&2
  exit 1
fi
instance=$(hostname)

# Run by `manage.py shell -c` in the container, so that it uses the app's own settings.
# The lock key is fixed: every instance of every version must take the same one.
read -r -d '' script <<'PY' || true
import os, sys, time
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

LOCK_KEY = 7262930411  # "antenna migrate"; any fixed bigint shared by all instances
instance = os.environ.get("MIGRATE_INSTANCE") or "this instance"

def pending():
    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))

if connection.vendor != "postgresql":
    print(f"migrate: the database is {connection.vendor}, not PostgreSQL: no advisory lock, "
          f"{instance} migrates without one (several instances may migrate at once)", flush=True)
    call_command("migrate", interactive=False)
    sys.exit(0)

started = time.monotonic()
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
    if not cursor.fetchone()[0]:
        print(f"migrate: {instance} waits for the migration lock (another instance is migrating)", flush=True)
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
waited = time.monotonic() - started
print(f"migrate: {instance} holds the migration lock (waited {waited:.1f} s)", flush=True)
try:
    todo = pending()
    if todo == 0:
        print(f"migrate: {instance}: nothing left to apply", flush=True)
    else:
        print(f"migrate: {instance} applies {todo} migration(s)", flush=True)
    call_command("migrate", interactive=False)
    if todo:
        print(f"migrate: {instance} migrated the database", flush=True)
finally:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
PY

if ! docker exec --env MIGRATE_INSTANCE="$instance" "$container" python manage.py shell --verbosity 0 -c "$script"; then
  echo "postdeploy: the migration failed on $instance (its error is above); the deploy fails" >&2
  exit 1
fi
