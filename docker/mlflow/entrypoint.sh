#!/usr/bin/env bash
# The MLflow service: write the basic-auth configuration from the environment, then replace this
# shell by `mlflow server` (tracking + registry on a database, artifacts proxied to S3, logins on).
#
# Used by docker-compose.yaml's `mlflow` service (baked into the image at
# /opt/trainyard/mlflow-entrypoint.sh) and by `make prod-local` against local servers.
# Required:
#   MLFLOW_BACKEND_STORE_URI       tracking/registry database
#   MLFLOW_ARTIFACTS_DESTINATION   s3://bucket/prefix for artifacts (+ the AWS_* / MLFLOW_S3_* keys)
#   MLFLOW_AUTH_DATABASE_URI       the basic-auth users' database
#   MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY
# Optional:
#   MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (2), MLFLOW_AUTH_CONFIG_PATH,
#   MLFLOW_AUTH_DEFAULT_PERMISSION (READ), MLFLOW_AUTH_CACHE_TTL_SECONDS (60: each worker trusts a
#   verified login that long; checking the password hash costs ~0.3 s a request; 0 turns it off).
# The admin password is read by MLflow from the environment; it is never written to the file.
set -euo pipefail

for name in MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION MLFLOW_AUTH_DATABASE_URI \
            MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY; do
    if [[ -z "${!name:-}" ]]; then
        echo "the MLflow server needs ${name} in its environment (see .env.example)" >&2
        exit 2
    fi
done

config="${MLFLOW_AUTH_CONFIG_PATH:-${TMPDIR:-/tmp}/mlflow-basic-auth-$$.ini}"
umask 077
cat > "${config}" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="${config}"
# Server-side jobs (GenAI evaluation, trace roll-ups) are unused here and start 7 processes.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

exec python -m mlflow server \
    --backend-store-uri "${MLFLOW_BACKEND_STORE_URI}" \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION}" \
    --serve-artifacts \
    --app-name basic-auth \
    --host "${MLFLOW_HOST:-0.0.0.0}" \
    --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-2}"
