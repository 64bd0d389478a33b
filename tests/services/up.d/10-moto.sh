# moto_server: S3, ECR and STS on one endpoint.
pip_install 'moto[server]'
start moto "$VENV/bin/moto_server" -H 127.0.0.1 -p 5001
wait_port 5001 60
export_env MOTO_ENDPOINT http://127.0.0.1:5001
