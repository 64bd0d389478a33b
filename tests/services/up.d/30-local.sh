# The local target: the machine's Docker Engine (started before the tests, as on CI) and the
# docker CLI that postdeploy hooks call. Its tests publish host ports $(port 30)..$(port 39), and
# the Antenna-shaped fixture's (tests/tests/antenna_source.rs) $(port 70)..$(port 71).
command -v docker >/dev/null 2>&1 || apt_install docker.io
if ! docker info >/dev/null 2>&1; then
  log "the Docker Engine does not answer (DOCKER_HOST=${DOCKER_HOST:-default socket}): the local target tests need it"
  return 1
fi
export_env LOCAL_PORT_BASE "$(port 30)"
export_env ANTENNA_PORT_BASE "$(port 70)"
