"""Runtime settings, read from environment variables only.

The embedded stack, the production-shape run and docker-compose all set the same variables:

- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``: S3 credentials.
- ``AWS_ENDPOINT_URL_S3``: S3 endpoint (unset means AWS itself).
- ``AWS_DEFAULT_REGION``: defaults to ``us-east-1``.
- ``MLFLOW_TRACKING_URI`` (+ ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` when the
  server has basic auth); read by MLflow itself.
- ``TRAINYARD_RAW_BUCKET``: raw partitions (default ``raw``).
- ``TRAINYARD_ARTIFACTS_BUCKET``: snapshots, validation results, reports (default ``trainyard``).
- ``TRAINYARD_PIPELINES_DIR`` / ``TRAINYARD_EXPECTATIONS_DIR``: where specs and suites live
  (default: ``include/pipelines`` and ``include/expectations`` next to the package).
- ``TRAINYARD_GIT_COMMIT``: the code version recorded in lineage when there is no git checkout
  (the Docker image sets it at build time).
- ``TRAINYARD_TRAINING_QUEUE``: Celery queue of the ``train`` tasks (unset: Airflow's default
  queue), so training can run on its own pool of workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_INCLUDE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Where data and artifacts live; built from the environment by :func:`from_env`."""

    raw_bucket: str
    artifacts_bucket: str
    s3_endpoint_url: str | None
    region: str
    pipelines_dir: Path
    expectations_dir: Path
    training_queue: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: ``os.environ``).

        Args:
            environ: Mapping to read instead of the process environment.

        Returns:
            The settings.
        """
        env = os.environ if environ is None else environ
        return cls(
            raw_bucket=env.get("TRAINYARD_RAW_BUCKET", "raw"),
            artifacts_bucket=env.get("TRAINYARD_ARTIFACTS_BUCKET", "trainyard"),
            s3_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            pipelines_dir=Path(env.get("TRAINYARD_PIPELINES_DIR", _INCLUDE_DIR / "pipelines")),
            expectations_dir=Path(
                env.get("TRAINYARD_EXPECTATIONS_DIR", _INCLUDE_DIR / "expectations")
            ),
            training_queue=env.get("TRAINYARD_TRAINING_QUEUE") or None,
        )
