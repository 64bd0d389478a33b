# The official EB CLI (awsebcli) in a venv of its own: it pins botocore, which must not move
# the shared venv's botocore (moto's). Used by the conformance suite and bench_deploy.
EBCLI_VENV="${EBCLI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/antenna-pipeline/ebcli-venv}"
if [ ! -x "$EBCLI_VENV/bin/eb" ]; then
  log "installing the EB CLI into $EBCLI_VENV"
  python3 -m venv "$EBCLI_VENV"
  "$EBCLI_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$EBCLI_VENV/bin/pip" install -q awsebcli
fi
export_env EB_CLI "$EBCLI_VENV/bin/eb"
