"""Every credential of the production shape, by the variable name compose's ``.env`` uses."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class ProdSecrets:
    """Every credential of the deployment, by the variable name compose's ``.env`` uses."""

    airflow_admin_username: str
    airflow_admin_password: str
    airflow_fernet_key: str
    airflow_jwt_secret: str
    airflow_api_secret_key: str
    mlflow_username: str
    mlflow_password: str
    mlflow_flask_secret_key: str
    s3_access_key: str
    s3_secret_key: str
    airflow_db_password: str
    mlflow_db_password: str
    serving_api_key: str
    serving_webhook_secret: str
    mlflow_webhook_encryption_key: str

    ENV_NAMES: ClassVar[dict[str, str]] = {
        "airflow_admin_username": "AIRFLOW_ADMIN_USERNAME",
        "airflow_admin_password": "AIRFLOW_ADMIN_PASSWORD",
        "airflow_fernet_key": "AIRFLOW__CORE__FERNET_KEY",
        "airflow_jwt_secret": "AIRFLOW__API_AUTH__JWT_SECRET",
        "airflow_api_secret_key": "AIRFLOW__API__SECRET_KEY",
        "mlflow_username": "MLFLOW_TRACKING_USERNAME",
        "mlflow_password": "MLFLOW_TRACKING_PASSWORD",
        "mlflow_flask_secret_key": "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "s3_access_key": "AWS_ACCESS_KEY_ID",
        "s3_secret_key": "AWS_SECRET_ACCESS_KEY",
        "airflow_db_password": "AIRFLOW_DB_PASSWORD",
        "mlflow_db_password": "MLFLOW_DB_PASSWORD",
        "serving_api_key": "TRAINYARD_SERVING_API_KEY",
        "serving_webhook_secret": "TRAINYARD_SERVING_WEBHOOK_SECRET",
        "mlflow_webhook_encryption_key": "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY",
    }

    @classmethod
    def generate(cls) -> ProdSecrets:
        """Fresh random values (user names ``admin``)."""
        from cryptography.fernet import Fernet

        return cls(
            airflow_admin_username="admin",
            airflow_admin_password=secrets.token_urlsafe(16),
            airflow_fernet_key=Fernet.generate_key().decode(),
            airflow_jwt_secret=secrets.token_urlsafe(32),
            airflow_api_secret_key=secrets.token_urlsafe(32),
            mlflow_username="admin",
            mlflow_password=secrets.token_urlsafe(16),
            mlflow_flask_secret_key=secrets.token_urlsafe(32),
            s3_access_key="trainyard" + secrets.token_hex(4),
            s3_secret_key=secrets.token_urlsafe(24),
            airflow_db_password=secrets.token_urlsafe(16),
            mlflow_db_password=secrets.token_urlsafe(16),
            serving_api_key=secrets.token_urlsafe(24),
            serving_webhook_secret=secrets.token_urlsafe(24),
            mlflow_webhook_encryption_key=Fernet.generate_key().decode(),
        )

    @classmethod
    def load(cls, path: Path, environ: dict[str, str] | None = None) -> ProdSecrets:
        """Values from ``environ`` where set, the rest from ``path`` (created the first time).

        Args:
            path: JSON file in the state folder (mode 0600).
            environ: Where to look for the ``.env`` variables (default: ``os.environ``).
        """
        env = os.environ if environ is None else environ
        if path.exists():
            # Values a newer version added are generated for a state folder made before it.
            stored = cls(**{**asdict(cls.generate()), **json.loads(path.read_text())})
        else:
            stored = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(stored), indent=2))
        path.chmod(0o600)
        overrides = {
            name: env[variable] for name, variable in cls.ENV_NAMES.items() if env.get(variable)
        }
        return replace(stored, **overrides)
