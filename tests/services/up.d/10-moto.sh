# moto_server: S3, ECR and STS on one endpoint.
pip_install 'moto[server]'
moto_port=$(port 1)
start moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port"
wait_port "$moto_port" 60
export_env MOTO_ENDPOINT "http://127.0.0.1:$moto_port"
