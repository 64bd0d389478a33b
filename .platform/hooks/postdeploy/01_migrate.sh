#!/usr/bin/env bash
# Runs after the new version's containers have started (unlike container_commands, which run
# before them): apply Django migrations inside the new django container.
set -euo pipefail
container=$(docker ps --quiet --filter "label=com.amazonaws.ecs.container-name=django" | head -n 1)
if [ -z "$container" ]; then
  echo "postdeploy: no running django container found" >&2
  exit 1
fi
docker exec "$container" python manage.py migrate --noinput
