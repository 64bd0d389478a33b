# Two long-running Celery workers on the plain Redis (db 1) and Flower with basic auth.
# Tests that stop workers start their own, on their own database number (2 and up).
pip_install 'celery[redis]' flower
celery_dir="$(cd "$here/../fixtures/celery" && pwd)"
celery_broker="redis://127.0.0.1:$(port 10)/1"
flower_port=$(port 13)
flower_user=verify
flower_password="flower-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
celery_run() {
  local name=$1
  shift
  start "$name" env CELERY_BROKER_URL="$celery_broker" PYTHONPATH="$celery_dir" \
    "$VENV/bin/celery" --workdir "$celery_dir" -A app "$@"
}
celery_run celery-w1 worker --pool=solo -n w1@verify -Q antenna,jobs --without-mingle --without-gossip -l INFO
celery_run celery-w2 worker --pool=solo -n w2@verify -Q antenna --without-mingle --without-gossip -l INFO
celery_run flower flower --address=127.0.0.1 --port="$flower_port" --basic-auth="$flower_user:$flower_password"
wait_port "$flower_port" 60
# The workers log "NAME ready." once they consume; tests with short timeouts rely on it.
for w in w1 w2; do
  i=0
  until grep -q "$w@verify ready" "$SERVICES_DIR/logs/celery-$w.log" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 600 ]; then
      log "the Celery worker $w@verify is not ready after 60s; its log:"
      tail -n 30 "$SERVICES_DIR/logs/celery-$w.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
done
export_env CELERY_BROKER_URL "$celery_broker"
export_env FLOWER_URL "http://127.0.0.1:$flower_port"
export_env FLOWER_USER "$flower_user"
export_env FLOWER_PASSWORD "$flower_password"
