"""Runtime settings, read from environment variables only, in this one place.

The embedded stack, the production-shape run and docker-compose all set the same variables:

- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``: S3 credentials (unset: boto3's usual chain).
- ``AWS_ENDPOINT_URL_S3``: S3 endpoint (unset means AWS itself).
- ``AWS_DEFAULT_REGION``: defaults to ``us-east-1``.
- ``MLFLOW_TRACKING_URI`` (+ ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` when the
  server has basic auth); read by MLflow itself.
- ``TRAINYARD_RAW_BUCKET``: raw partitions (default ``raw``).
- ``TRAINYARD_ARTIFACTS_BUCKET``: snapshots, validation results, reports (default ``trainyard``).
- ``MLFLOW_ARTIFACTS_BUCKET``: where the MLflow server keeps model artifacts (default ``mlflow``);
  only the bucket set-up (``trainyard buckets``) needs it.
- ``TRAINYARD_PIPELINES_DIR`` / ``TRAINYARD_EXPECTATIONS_DIR``: where specs and suites live
  (default: ``include/pipelines`` and ``include/expectations`` next to the package).
- ``TRAINYARD_GIT_COMMIT``: the code version recorded in lineage when there is no git checkout
  (the Docker image sets it at build time).
- ``TRAINYARD_REQUIREMENTS_LOCK``: the dependency lock hashed into the code identity (default:
  ``requirements.lock`` of the checkout; the Docker image keeps it at
  ``/opt/trainyard/requirements.lock``).
- ``TRAINYARD_SERVICE_TIMEOUT`` (seconds, default 30) / ``TRAINYARD_SERVICE_RETRIES`` (default 2):
  how long one S3 or MLflow request may wait for an answer and how often it is retried before
  the step fails as "unavailable" (then Airflow's task retries take over). For MLflow they are
  defaults of ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, which win
  when set.
- ``TRAINYARD_TASK_RETRY_DELAY`` (seconds, default 30): the delay before an Airflow task's first
  retry (doubled for each further one, up to 10 minutes); read when the DAGs are parsed.
- ``TRAINYARD_MLFLOW_UI_URL`` / ``TRAINYARD_S3_PUBLIC_URL``: where a person's browser reaches
  the MLflow UI and S3, for the links of the Airflow UI (default: ``MLFLOW_TRACKING_URI`` and the
  S3 endpoint, right when the browser and Airflow see the services at the same address).
- ``TRAINYARD_TRAINING_QUEUE``: Celery queue of the ``train`` tasks (unset: Airflow's default
  queue), so training can run on its own pool of workers.

The model server (``trainyard serve``) reads its own variables, ``TRAINYARD_SERVING_*``, into
:class:`ServingSettings`; alerts read ``TRAINYARD_ALERT_*`` into :class:`AlertSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_INCLUDE_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """Where data and artifacts live; built from the environment by :meth:`from_env`."""

    raw_bucket: str = "raw"
    artifacts_bucket: str = "trainyard"
    mlflow_artifacts_bucket: str = "mlflow"
    s3_endpoint_url: str | None = None
    region: str = "us-east-1"
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    pipelines_dir: Path = _INCLUDE_DIR / "pipelines"
    expectations_dir: Path = _INCLUDE_DIR / "expectations"
    training_queue: str | None = None
    git_commit: str | None = None
    requirements_lock: Path = _INCLUDE_DIR.parent / "requirements.lock"
    service_timeout_seconds: int = 30
    service_retries: int = 2
    task_retry_delay_seconds: int = 30
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    s3_public_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
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
            mlflow_artifacts_bucket=env.get("MLFLOW_ARTIFACTS_BUCKET", "mlflow"),
            s3_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            s3_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            s3_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            pipelines_dir=Path(env.get("TRAINYARD_PIPELINES_DIR", _INCLUDE_DIR / "pipelines")),
            expectations_dir=Path(
                env.get("TRAINYARD_EXPECTATIONS_DIR", _INCLUDE_DIR / "expectations")
            ),
            training_queue=env.get("TRAINYARD_TRAINING_QUEUE") or None,
            git_commit=env.get("TRAINYARD_GIT_COMMIT") or None,
            requirements_lock=Path(
                env.get("TRAINYARD_REQUIREMENTS_LOCK") or _INCLUDE_DIR.parent / "requirements.lock"
            ),
            service_timeout_seconds=int(env.get("TRAINYARD_SERVICE_TIMEOUT") or 30),
            service_retries=int(env.get("TRAINYARD_SERVICE_RETRIES") or 2),
            task_retry_delay_seconds=int(env.get("TRAINYARD_TASK_RETRY_DELAY") or 30),
            mlflow_ui_url=env.get("TRAINYARD_MLFLOW_UI_URL")
            or env.get("MLFLOW_TRACKING_URI")
            or cls.mlflow_ui_url,
            s3_public_url=env.get("TRAINYARD_S3_PUBLIC_URL") or None,
        )

    @property
    def buckets(self) -> list[str]:
        """Every bucket the deployment needs: raw data, trainyard artifacts, MLflow artifacts."""
        return [self.raw_bucket, self.artifacts_bucket, self.mlflow_artifacts_bucket]


@dataclass(frozen=True)
class ServingSettings:
    """The model server's settings (``trainyard serve``), from ``TRAINYARD_SERVING_*`` variables.

    | variable | meaning | default |
    | --- | --- | --- |
    | ``TRAINYARD_SERVING_HOST`` / ``_PORT`` | where it listens | ``127.0.0.1`` / ``8000`` |
    | ``TRAINYARD_SERVING_API_KEY`` | required as ``Authorization: Bearer <key>`` when set | unset |
    | ``TRAINYARD_SERVING_PIPELINES`` | comma-separated pipelines to serve | every spec |
    | ``TRAINYARD_SERVING_POLL_SECONDS`` | how often the ``champion`` alias is re-read | ``10`` |
    | ``TRAINYARD_SERVING_WEBHOOK_URL`` | this server's URL as MLflow reaches it (webhook) | unset |
    | ``TRAINYARD_SERVING_WEBHOOK_SECRET`` | HMAC secret of that webhook | unset |
    | ``TRAINYARD_SERVING_LOG_FLUSH_SECONDS`` / ``_ROWS`` | log flush period / size | 60 / 10000 |
    | ``TRAINYARD_SERVING_LOG_MAX_BACKLOG_ROWS`` | rows kept while S3 is unreachable | ``100000`` |
    | ``TRAINYARD_SERVING_LOG_SPILL_DIR`` | rows S3 refused at shutdown, for a restart | ``*`` |
    | ``TRAINYARD_SERVING_MAX_BODY_BYTES`` | largest request body | ``4194304`` |
    | ``TRAINYARD_SERVING_PREDICT_THREADS`` | predictions running at once | ``2`` |
    | ``TRAINYARD_SERVING_BATCH_MAX_ROWS`` | most waiting rows in one prediction | ``256`` |
    | ``TRAINYARD_SERVING_NATIVE_THREADS`` | OpenMP/BLAS threads per prediction | ``1`` |

    ``*``: ``~/.local/state/trainyard/prediction-log``. Two prediction threads: one per core of
    the 2-core host; each takes every request waiting for its model, so more threads mostly
    make smaller batches; and one native thread each, as OpenMP's own threads made one-row
    predictions slower, not faster (:mod:`trainyard.serving.batching`).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    pipelines: tuple[str, ...] = ()
    poll_seconds: float = 10.0
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    log_flush_seconds: float = 60.0
    log_flush_rows: int = 10_000
    log_max_backlog_rows: int = 100_000
    log_spill_dir: Path = field(
        default_factory=lambda: Path.home() / ".local" / "state" / "trainyard" / "prediction-log"
    )
    max_body_bytes: int = 4 * 1024 * 1024
    predict_threads: int = 2
    batch_max_rows: int = 256
    native_threads: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Read the serving settings from ``environ`` (default: ``os.environ``).

        Raises:
            ValueError: A number is not a number, or a webhook URL comes without its secret.
        """
        env = os.environ if environ is None else environ
        defaults = cls()

        def number(name: str, default: float, kind: type) -> float | int:
            raw = env.get(f"TRAINYARD_SERVING_{name}")
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ValueError(f"TRAINYARD_SERVING_{name}={raw!r} is not {what}") from None
            if value <= 0:
                raise ValueError(f"TRAINYARD_SERVING_{name} must be positive, got {raw}")
            return value

        settings = cls(
            host=env.get("TRAINYARD_SERVING_HOST") or defaults.host,
            port=int(number("PORT", defaults.port, int)),
            api_key=env.get("TRAINYARD_SERVING_API_KEY") or None,
            pipelines=tuple(
                name.strip()
                for name in env.get("TRAINYARD_SERVING_PIPELINES", "").split(",")
                if name.strip()
            ),
            poll_seconds=float(number("POLL_SECONDS", defaults.poll_seconds, float)),
            webhook_url=env.get("TRAINYARD_SERVING_WEBHOOK_URL") or None,
            webhook_secret=env.get("TRAINYARD_SERVING_WEBHOOK_SECRET") or None,
            log_flush_seconds=float(number("LOG_FLUSH_SECONDS", defaults.log_flush_seconds, float)),
            log_flush_rows=int(number("LOG_FLUSH_ROWS", defaults.log_flush_rows, int)),
            log_max_backlog_rows=int(
                number("LOG_MAX_BACKLOG_ROWS", defaults.log_max_backlog_rows, int)
            ),
            log_spill_dir=Path(env["TRAINYARD_SERVING_LOG_SPILL_DIR"]).expanduser()
            if env.get("TRAINYARD_SERVING_LOG_SPILL_DIR")
            else defaults.log_spill_dir,
            max_body_bytes=int(number("MAX_BODY_BYTES", defaults.max_body_bytes, int)),
            predict_threads=int(number("PREDICT_THREADS", defaults.predict_threads, int)),
            batch_max_rows=int(number("BATCH_MAX_ROWS", defaults.batch_max_rows, int)),
            native_threads=int(number("NATIVE_THREADS", defaults.native_threads, int)),
        )
        for name, value in (
            ("API_KEY", settings.api_key),
            ("WEBHOOK_SECRET", settings.webhook_secret),
        ):
            if value is not None and "change-me" in value:
                raise ValueError(
                    f"TRAINYARD_SERVING_{name} is still the .env.example placeholder: set a secret"
                )
        if settings.webhook_url and not settings.webhook_secret:
            raise ValueError(
                "TRAINYARD_SERVING_WEBHOOK_URL is set without TRAINYARD_SERVING_WEBHOOK_SECRET: "
                "an unsigned webhook would let anyone make the server reload"
            )
        return settings


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go (:mod:`trainyard.alerts`), from ``TRAINYARD_ALERT_*`` variables.

    Every channel that is configured gets each alert; none configured: alerts are only logged.

    - ``TRAINYARD_ALERT_SMTP_HOST`` / ``_SMTP_PORT``: SMTP server (unset: no e-mail; port 25);
      ``_SMTP_USER`` / ``_SMTP_PASSWORD``: its login, if it needs one; ``_SMTP_STARTTLS=true``:
      STARTTLS before logging in; ``_EMAIL_FROM`` (``trainyard@localhost``) and ``_EMAIL_TO``
      (comma-separated recipients, required with an SMTP host).
    - ``TRAINYARD_ALERT_SLACK_WEBHOOK_URL``: a Slack-compatible incoming webhook (``{"text"}``).
    - ``TRAINYARD_ALERT_WEBHOOK_URL``: a generic JSON webhook (the whole alert as JSON).
    - ``TRAINYARD_ALERT_TIMEOUT``: seconds one delivery may take (10).
    - ``TRAINYARD_AIRFLOW_UI_URL``: where people reach Airflow, for the links (default
      ``AIRFLOW__API__BASE_URL``, else ``http://localhost:8080``).
    """

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    email_from: str = "trainyard@localhost"
    email_to: tuple[str, ...] = ()
    slack_webhook_url: str | None = field(default=None, repr=False)
    webhook_url: str | None = None
    timeout_seconds: float = 10.0
    airflow_ui_url: str = "http://localhost:8080"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """Read the alert settings from ``environ`` (default: ``os.environ``).

        Raises:
            ValueError: A number is not a number, or an SMTP host comes without recipients.
        """
        env = os.environ if environ is None else environ
        defaults = cls()

        def number(name: str, default: float) -> float:
            raw = env.get(f"TRAINYARD_ALERT_{name}")
            if raw in (None, ""):
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"TRAINYARD_ALERT_{name}={raw!r} is not a number") from None

        settings = cls(
            smtp_host=env.get("TRAINYARD_ALERT_SMTP_HOST") or None,
            smtp_port=int(number("SMTP_PORT", defaults.smtp_port)),
            smtp_user=env.get("TRAINYARD_ALERT_SMTP_USER") or None,
            smtp_password=env.get("TRAINYARD_ALERT_SMTP_PASSWORD") or None,
            smtp_starttls=env.get("TRAINYARD_ALERT_SMTP_STARTTLS", "").lower()
            in {"1", "true", "yes"},
            email_from=env.get("TRAINYARD_ALERT_EMAIL_FROM") or defaults.email_from,
            email_to=tuple(
                address.strip()
                for address in env.get("TRAINYARD_ALERT_EMAIL_TO", "").split(",")
                if address.strip()
            ),
            slack_webhook_url=env.get("TRAINYARD_ALERT_SLACK_WEBHOOK_URL") or None,
            webhook_url=env.get("TRAINYARD_ALERT_WEBHOOK_URL") or None,
            timeout_seconds=number("TIMEOUT", defaults.timeout_seconds),
            airflow_ui_url=(
                env.get("TRAINYARD_AIRFLOW_UI_URL")
                or env.get("AIRFLOW__API__BASE_URL")
                or defaults.airflow_ui_url
            ).rstrip("/"),
        )
        if settings.smtp_host and not settings.email_to:
            raise ValueError(
                "TRAINYARD_ALERT_SMTP_HOST is set without TRAINYARD_ALERT_EMAIL_TO: "
                "nobody to send the alerts to"
            )
        return settings

    @property
    def channels(self) -> list[str]:
        """The configured channels: ``smtp``, ``slack``, ``webhook`` (empty: log only)."""
        configured = {
            "smtp": self.smtp_host,
            "slack": self.slack_webhook_url,
            "webhook": self.webhook_url,
        }
        return [name for name, value in configured.items() if value]
