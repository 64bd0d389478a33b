# RabbitMQ for the Celery-over-AMQP checks: one node (run as the current user, data under the
# services folder) with a plain and a TLS listener (certificate signed by the Redis test CA), a
# vhost "antenna" with a user that has a password, and a real Celery worker consuming Antenna's
# queues (antenna, jobs, ml_results) on that vhost. Tests that stop a worker start their own, on
# a vhost of their own.
apt_install rabbitmq-server
pip_install 'celery[redis]'
rabbit_dir="$SERVICES_DIR/rabbitmq"
mkdir -p "$rabbit_dir/mnesia" "$rabbit_dir/log"
rabbit_port=$(port 40)
rabbit_tls_port=$(port 43)
rabbit_epmd_port=$(port 42)
rabbit_password="amqp-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo '[].' >"$rabbit_dir/plugins"
cat >"$rabbit_dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$rabbit_port
listeners.ssl.default = 127.0.0.1:$rabbit_tls_port
ssl_options.cacertfile = $SERVICES_DIR/redis/ca.pem
ssl_options.certfile = $SERVICES_DIR/redis/server.pem
ssl_options.keyfile = $SERVICES_DIR/redis/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
CONF
# The environment every RabbitMQ command of this node needs.
rabbit_env=(env HOME="$rabbit_dir" RABBITMQ_NODENAME="verify@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  RABBITMQ_NODE_PORT="$rabbit_port" RABBITMQ_DIST_PORT="$(port 41)" ERL_EPMD_PORT="$rabbit_epmd_port"
  RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" RABBITMQ_LOG_BASE="$rabbit_dir/log"
  RABBITMQ_FEATURE_FLAGS_FILE="$rabbit_dir/ff" RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/plugins"
  RABBITMQ_CONFIG_FILE="$rabbit_dir/rabbitmq.conf" RABBITMQ_PID_FILE="$rabbit_dir/pid"
  RABBITMQ_CTL_DIST_PORT_MIN="$(port 44)" RABBITMQ_CTL_DIST_PORT_MAX="$(port 44)")
# epmd in the foreground, so that down.sh stops it with the node.
start rabbitmq-epmd env ERL_EPMD_ADDRESS=127.0.0.1 epmd -port "$rabbit_epmd_port"
start rabbitmq "${rabbit_env[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server
wait_port "$rabbit_port" 90
wait_port "$rabbit_tls_port" 30
rabbitmqctl() { "${rabbit_env[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl "$@" >/dev/null; }
rabbitmqctl await_startup --timeout 60
rabbitmqctl add_vhost antenna
rabbitmqctl add_user antenna "$rabbit_password"
rabbitmqctl set_permissions -p antenna antenna '.*' '.*' '.*'
# The tests' own vhosts (one per test that starts or stops a worker).
for v in stopped spare; do
  rabbitmqctl add_vhost "$v"
  rabbitmqctl set_permissions -p "$v" antenna '.*' '.*' '.*'
done
amqp_broker="amqp://antenna:$rabbit_password@127.0.0.1:$rabbit_port/antenna"
start celery-amqp env CELERY_BROKER_URL="$amqp_broker" PYTHONPATH="$celery_dir" \
  "$VENV/bin/celery" --workdir "$celery_dir" -A app worker --pool=solo -n amqp1@verify \
  -Q antenna,jobs,ml_results --without-mingle --without-gossip -l INFO
i=0
until grep -q "amqp1@verify ready" "$SERVICES_DIR/logs/celery-amqp.log" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 600 ]; then
    log "the Celery worker amqp1@verify is not ready after 60s; its log:"
    tail -n 30 "$SERVICES_DIR/logs/celery-amqp.log" >&2 || true
    return 1
  fi
  sleep 0.1
done
export_env AMQP_URL "amqp://antenna:$rabbit_password@127.0.0.1:$rabbit_port/antenna"
export_env AMQPS_URL "amqps://antenna:$rabbit_password@127.0.0.1:$rabbit_tls_port/antenna"
export_env AMQP_PASSWORD "$rabbit_password"
export_env AMQP_BASE "127.0.0.1:$rabbit_port"
export_env AMQP_TLS_CA "$SERVICES_DIR/redis/ca.pem"
