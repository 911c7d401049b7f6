# The trainyard Airflow image: the official Airflow image plus this repository's locked
# requirements, the trainyard package, the DAGs, plugins, pipeline specs and expectation suites.
# docker-compose.yaml runs every Airflow component, the one-shot S3 set-up and the MLflow server
# from it.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t trainyard-airflow:latest .
#
# No secret is baked in: credentials arrive at run time through the environment (.env).
# The build context is an allow-list (.dockerignore): .env, .venv and local state never enter it.
FROM apache/airflow:3.3.2-python3.11

USER airflow
WORKDIR /opt/airflow

# 1. Dependencies: the same hash-checked lock `make` installs (its own layer: rebuilt only when
#    the lock changes). It pins apache-airflow itself to the base image's version. The lock stays
#    in the image: it is part of the code identity hashed into every training fingerprint.
COPY --chown=airflow:0 requirements.lock /opt/trainyard/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /opt/trainyard/requirements.lock

# 2. The trainyard package, without dependencies (they all came from the lock); setuptools is in
#    the lock, so no unpinned build requirement is downloaded.
COPY --chown=airflow:0 pyproject.toml /tmp/trainyard/pyproject.toml
COPY --chown=airflow:0 include/trainyard /tmp/trainyard/include/trainyard
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/trainyard \
    && rm -rf /tmp/trainyard

# 3. DAGs, plugins, pipeline specs and expectation suites; the MLflow service's entrypoint.
#    The local tooling (tools/) is not part of the image.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/pipelines/ /opt/airflow/include/pipelines/
COPY --chown=airflow:0 include/expectations/ /opt/airflow/include/expectations/
COPY --chown=airflow:0 docker/mlflow/entrypoint.sh /opt/trainyard/mlflow-entrypoint.sh
# The model server's prediction-log spill folder (a volume in compose), owned by airflow so the
# volume created from it is writable.
RUN mkdir -p /opt/airflow/prediction-log

# The installed package lives in site-packages, so say where its specs and suites are.
# /opt/airflow/auth holds SimpleAuthManager's passwords file, written by airflow-init from .env.
ENV TRAINYARD_PIPELINES_DIR=/opt/airflow/include/pipelines \
    TRAINYARD_EXPECTATIONS_DIR=/opt/airflow/include/expectations \
    TRAINYARD_REQUIREMENTS_LOCK=/opt/trainyard/requirements.lock \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=False \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
RUN mkdir -p /opt/airflow/auth && chmod 0770 /opt/airflow/auth

# The commit recorded in every model version's lineage (there is no .git in the image); the
# training fingerprint does not depend on it (it hashes the installed code and the lock).
# Last, so a new commit rebuilds only this layer.
ARG GIT_COMMIT=unknown
ENV TRAINYARD_GIT_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.revision=${GIT_COMMIT} \
      org.opencontainers.image.title="trainyard-airflow"

# The official image's non-root user (uid 50000, gid 0): every compose healthcheck (curl,
# `airflow jobs check`, `celery inspect ping`) runs as it.
USER airflow
