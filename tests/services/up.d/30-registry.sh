# Two Debian docker-registry servers with htpasswd, standing in for ECR's registry endpoint.
# REGISTRY accepts moto's ECR token (user AWS, password 123456789012-auth-token), so the
# credentials from GetAuthorizationToken log in; REGISTRY_OTHER wants another password, so the
# same token is refused there. The Docker Engine treats 127.0.0.0/8 as an insecure registry.
# Busybox-static gives the image tests a static binary to copy into FROM scratch images.
apt_install docker-registry apache2-utils busybox-static
registry_serve() { # NAME PORT PASSWORD
  local dir="$SERVICES_DIR/$1"
  mkdir -p "$dir/data"
  htpasswd -Bbc "$dir/htpasswd" AWS "$3" 2>/dev/null
  cat >"$dir/config.yml" <<YAML
version: 0.1
log: {level: info, formatter: text, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$2, secret: test-only}
auth: {htpasswd: {realm: basic-realm, path: $dir/htpasswd}}
YAML
  start "$1" docker-registry serve "$dir/config.yml"
}
registry_serve registry "$(port 2)" 123456789012-auth-token
registry_serve registry-other "$(port 3)" not-the-ecr-token
wait_port "$(port 2)" 30
wait_port "$(port 3)" 30
export_env REGISTRY "127.0.0.1:$(port 2)"
export_env REGISTRY_OTHER "127.0.0.1:$(port 3)"
export_env REGISTRY_LOG "$SERVICES_DIR/logs/registry.log"
export_env BUSYBOX "$(command -v busybox)"
