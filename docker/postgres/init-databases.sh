#!/usr/bin/env bash
# Roles and databases of Airflow and MLflow on one PostgreSQL server.
#
# Run by the postgres image on the first start of an empty data volume
# (/docker-entrypoint-initdb.d/), and by `make prod-local` / trainyard.prodstack against a local
# server (PGHOST/PGPORT set). Names have defaults; passwords must be given:
#
#   AIRFLOW_DB_NAME (airflow)  AIRFLOW_DB_USER (airflow)  AIRFLOW_DB_PASSWORD
#   MLFLOW_DB_NAME (mlflow)    MLFLOW_AUTH_DB_NAME (mlflow_auth)
#   MLFLOW_DB_USER (mlflow)    MLFLOW_DB_PASSWORD
#
# Airflow's metadata (which also holds the Celery results), MLflow's tracking/registry store and
# MLflow's basic-auth users live in three databases: MLflow's two stores each keep their own
# alembic_version table, so they cannot share one database.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set (see .env.example)}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set (see .env.example)}"

psql --no-psqlrc -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v airflow_db="${AIRFLOW_DB_NAME:-airflow}" \
    -v airflow_user="${AIRFLOW_DB_USER:-airflow}" \
    -v airflow_password="${AIRFLOW_DB_PASSWORD}" \
    -v mlflow_db="${MLFLOW_DB_NAME:-mlflow}" \
    -v mlflow_auth_db="${MLFLOW_AUTH_DB_NAME:-mlflow_auth}" \
    -v mlflow_user="${MLFLOW_DB_USER:-mlflow}" \
    -v mlflow_password="${MLFLOW_DB_PASSWORD}" <<'SQL'
CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_password';
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
CREATE DATABASE :"mlflow_auth_db" OWNER :"mlflow_user";
SQL
echo "created databases ${AIRFLOW_DB_NAME:-airflow}, ${MLFLOW_DB_NAME:-mlflow}, ${MLFLOW_AUTH_DB_NAME:-mlflow_auth}"
