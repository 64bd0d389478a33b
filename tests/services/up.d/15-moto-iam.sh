# A second moto_server that enforces IAM (S3, ECR, STS, IAM) for the IAM policy tests. It starts
# with enforcement off; a test switches it on with POST /moto-api/reset-auth (body: how many
# requests may still go unauthenticated) once it has created its user and resources.
moto_iam_port=$(port 60)
start moto-iam "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_iam_port"
wait_port "$moto_iam_port" 60
export_env MOTO_IAM_ENDPOINT "http://127.0.0.1:$moto_iam_port"
