# Redis for the verify checks: a plain server (also the Celery broker), a TLS one like
# ElastiCache's (certificate signed by a test CA generated here), and one with a password.
apt_install redis-server openssl
redis_dir="$SERVICES_DIR/redis"
mkdir -p "$redis_dir"

# A throwaway CA and a server certificate for 127.0.0.1/localhost, signed by it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=verify test CA" \
  -keyout "$redis_dir/ca.key" -out "$redis_dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$redis_dir/server.key" -out "$redis_dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  >"$redis_dir/server.ext"
openssl x509 -req -in "$redis_dir/server.csr" -CA "$redis_dir/ca.pem" -CAkey "$redis_dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$redis_dir/server.ext" -out "$redis_dir/server.pem" 2>/dev/null

redis_plain=$(port 10)
redis_tls=$(port 11)
redis_auth=$(port 12)
redis_password="verify-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
common=(--bind 127.0.0.1 --save '' --appendonly no --databases 64)
start redis-plain redis-server "${common[@]}" --port "$redis_plain" --dir "$redis_dir"
start redis-tls redis-server "${common[@]}" --port 0 --tls-port "$redis_tls" \
  --tls-cert-file "$redis_dir/server.pem" --tls-key-file "$redis_dir/server.key" \
  --tls-ca-cert-file "$redis_dir/ca.pem" --tls-auth-clients no --dir "$redis_dir"
start redis-auth redis-server "${common[@]}" --port "$redis_auth" --requirepass "$redis_password" --dir "$redis_dir"
wait_port "$redis_plain"
wait_port "$redis_tls"
wait_port "$redis_auth"
export_env REDIS_URL "redis://127.0.0.1:$redis_plain"
export_env REDIS_TLS_URL "rediss://127.0.0.1:$redis_tls"
export_env REDIS_TLS_CA "$redis_dir/ca.pem"
export_env REDIS_AUTH_URL "redis://127.0.0.1:$redis_auth"
export_env REDIS_AUTH_PASSWORD "$redis_password"
