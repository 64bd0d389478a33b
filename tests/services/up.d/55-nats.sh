# NATS for the NATS check: JetStream on (no auth), JetStream off, user/password, token, and TLS
# (certificate signed by the Redis test CA), each its own nats-server with its own store.
apt_install nats-server
nats_dir="$SERVICES_DIR/nats"
mkdir -p "$nats_dir"
nats_password="nats-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
nats_token="tok-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# nats_conf NAME PORT EXTRA: writes a config file with JetStream on and EXTRA appended.
nats_conf() {
  mkdir -p "$nats_dir/$1"
  printf 'listen: 127.0.0.1:%s\njetstream { store_dir: "%s" }\n%s\n' "$2" "$nats_dir/$1/js" "$3" \
    >"$nats_dir/$1.conf"
}
nats_conf js "$(port 45)" ""
nats_conf auth "$(port 47)" "authorization { user: antenna, password: \"$nats_password\" }"
nats_conf token "$(port 48)" "authorization { token: \"$nats_token\" }"
nats_conf tls "$(port 49)" "tls { cert_file: \"$SERVICES_DIR/redis/server.pem\", key_file: \"$SERVICES_DIR/redis/server.key\" }"
for n in js auth token tls; do
  start "nats-$n" nats-server -c "$nats_dir/$n.conf"
done
start nats-nojs nats-server -a 127.0.0.1 -p "$(port 46)"
for p in 45 46 47 48 49; do wait_port "$(port "$p")"; done
export_env NATS_URL "nats://127.0.0.1:$(port 45)"
export_env NATS_NOJS_URL "nats://127.0.0.1:$(port 46)"
export_env NATS_AUTH_URL "nats://antenna:$nats_password@127.0.0.1:$(port 47)"
export_env NATS_PASSWORD "$nats_password"
export_env NATS_TOKEN_URL "nats://$nats_token@127.0.0.1:$(port 48)"
export_env NATS_TOKEN "$nats_token"
export_env NATS_TLS_URL "tls://127.0.0.1:$(port 49)"
