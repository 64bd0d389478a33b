# PostgreSQL for the postdeploy migration hook's tests (tests/tests/migrate.rs): a cluster of its
# own under the services folder, on 127.0.0.1 only, with a user that has a password and may create
# databases (each test creates its own), and Django with psycopg in the test venv. The server
# refuses to run as root: when we are root it runs as the `postgres` user of the Debian package.
apt_install postgresql
pip_install django 'psycopg[binary]'
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && pg_bin=$d
done
if [ -z "$pg_bin" ]; then
  log "no initdb under /usr/lib/postgresql/*/bin: install Debian's postgresql package"
  return 1
fi
pg_dir="$SERVICES_DIR/postgres"
pg_port=$(port 50)
pg_password="pg-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$pg_dir"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth-local=trust \
  --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$SERVICES_DIR/logs/postgres-initdb.log" 2>&1 || {
  log "initdb failed; its output:"
  cat "$SERVICES_DIR/logs/postgres-initdb.log" >&2
  return 1
}
# The Unix socket lives in the cluster's folder (the system one may belong to another server).
start postgres "${as_pg[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -c listen_addresses=127.0.0.1 \
  -p "$pg_port" -c unix_socket_directories="$pg_dir" -c fsync=off -c max_connections=50
wait_port "$pg_port" 30
"${as_pg[@]}" "$pg_bin/psql" -qX -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -U postgres -d postgres \
  -c "CREATE ROLE antenna LOGIN CREATEDB PASSWORD '$pg_password'" \
  -c "CREATE DATABASE antenna OWNER antenna" >/dev/null
export_env POSTGRES_URL "postgres://antenna:$pg_password@127.0.0.1:$pg_port/antenna"
