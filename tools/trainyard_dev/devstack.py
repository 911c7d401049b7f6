"""The embedded stack: SeaweedFS (S3), an MLflow tracking server and ``airflow standalone``.

Everything binds to 127.0.0.1 and keeps its state under one folder (``.stack/`` by default).
Services run detached, so they outlive the command that started them, until ``down``.
The test suite uses the same code with free ports and a temporary folder.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from trainyard_dev.config import REPO_DIR
from trainyard_dev.services import (
    HOST,
    Ports,
    ServiceRunner,
    http_answers,
    http_ok,
    s3_identities,
    seaweedfs_command,
    wait_for,
)

AIRFLOW_ADMIN = "admin"
#: Upper bounds on a service's start-up. Generous on purpose: on a loaded 2-core machine the
#: MLflow server took over 120 s to start its workers; a healthy start returns as soon as ready.
START_TIMEOUTS = {"s3": 180.0, "mlflow": 300.0, "airflow": 420.0, "model-server": 180.0}
MODEL_SERVER = "model-server"
#: The embedded scheduler's idle sleep between loops (Airflow's default is 1 s; see
#: ``Stack.airflow_env``). 0.2 s costs a few idle SQLite queries a second.
SCHEDULER_IDLE_SLEEP_S = 0.2


@dataclass(frozen=True)
class Credentials:
    """Generated once per state folder and kept there (never in the repo)."""

    s3_access_key: str
    s3_secret_key: str
    airflow_password: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """Read the credentials file, creating it with random values the first time."""
        if path.exists():
            return cls(**json.loads(path.read_text()))
        credentials = cls(
            s3_access_key="trainyard" + secrets.token_hex(4),
            s3_secret_key=secrets.token_urlsafe(24),
            airflow_password=secrets.token_urlsafe(12),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(credentials), indent=2))
        path.chmod(0o600)
        return credentials


def fernet_key() -> str:
    """A new key in the format MLflow encrypts webhook secrets with (Fernet)."""
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# MLflow's server-side jobs (GenAI evaluation, trace roll-ups) are unused here; left on, each
# server starts seven huey consumer processes (~280 MB each), as docker/mlflow/entrypoint.sh notes.
MLFLOW_SERVER_WITHOUT_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_webhook_env(encryption_key: str) -> dict[str, str]:
    """What an MLflow server needs to deliver registry webhooks to a model server nearby.

    The key encrypting webhook secrets in MLflow's database must be the same for every worker
    and every restart. Plain HTTP and private addresses are refused by default (SSRF protection);
    the model server is on loopback (or the compose network). MLflow caches the webhook list for
    60 s by default; 5 s makes a webhook registered at the model server's start usable at once.
    """
    return {
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": encryption_key,
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_CACHE_TTL": "5",
    }


@dataclass
class Stack(ServiceRunner):
    """The embedded stack rooted at ``state_dir``."""

    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    buckets: tuple[str, ...] = ("raw", "trainyard", "mlflow")
    dags_dir: Path = REPO_DIR / "dags"
    plugins_dir: Path = REPO_DIR / "plugins"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        self.credentials = Credentials.load_or_create(self.state_dir / "credentials.json")

    # ---- addresses and environment -------------------------------------------------------

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.ports.s3}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.mlflow}"

    @property
    def airflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.airflow}"

    @property
    def serving_url(self) -> str:
        return f"http://{HOST}:{self.ports.serving}"

    def client_env(self) -> dict[str, str]:
        """Variables a task, the CLI or a test needs to use this stack (the config surface)."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.s3_secret_key,
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "TRAINYARD_RAW_BUCKET": self.buckets[0],
            "TRAINYARD_ARTIFACTS_BUCKET": self.buckets[1],
            "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            **self.extra_env,
        }

    def airflow_env(self) -> dict[str, str]:
        """Airflow configuration of the standalone deployment."""
        home = self.state_dir / "airflow"
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_dir),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_dir),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.ports.airflow),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports.airflow_worker_logs),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports.airflow_trigger_logs),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # How long the scheduler sleeps after a loop that queued nothing and saw no task end
            # ([scheduler] scheduler_idle_sleep_time, default 1 s): a task that ends during that
            # sleep waits for it before its downstream task is queued, once per edge of the DAG.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(SCHEDULER_IDLE_SLEEP_S),
        }

    def state_secret(self, name: str, make: Callable[[], str]) -> str:
        """A secret kept in the state folder (mode 0600), made by ``make`` the first time."""
        path = self.state_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()

    def serving_env(self) -> dict[str, str]:
        """The model server's settings: this stack's port and MLflow webhooks to it.

        The webhook secret is made once per state folder. No API key on the embedded stack
        (the production shape sets one). Rows S3 refuses at shutdown wait in the state folder.
        """
        secret = self.state_secret("serving-webhook.secret", lambda: secrets.token_urlsafe(24))
        return {
            "TRAINYARD_SERVING_HOST": HOST,
            "TRAINYARD_SERVING_PORT": str(self.ports.serving),
            "TRAINYARD_SERVING_WEBHOOK_URL": f"{self.serving_url}/webhooks/mlflow",
            "TRAINYARD_SERVING_WEBHOOK_SECRET": secret,
            "TRAINYARD_SERVING_LOG_SPILL_DIR": str(self.state_dir / "prediction-log"),
        }

    def write_env_file(self) -> Path:
        """``<state>/stack.env``: ``source`` it to point the CLI at this stack."""
        path = self.state_dir / "stack.env"
        path.write_text("".join(f"export {k}={v}\n" for k, v in sorted(self.client_env().items())))
        path.chmod(0o600)
        return path

    # ---- services --------------------------------------------------------------------------

    def start_s3(self) -> None:
        """SeaweedFS with S3 on ``ports.s3``, keys from the credentials file, buckets made."""
        if self.running_pid("s3") is None:
            self._check_ports("SeaweedFS", self.ports.seaweedfs())
            data_dir = self.state_dir / "seaweedfs"
            data_dir.mkdir(parents=True, exist_ok=True)
            config = self.state_dir / "s3-identities.json"
            identities = s3_identities(
                self.credentials.s3_access_key, self.credentials.s3_secret_key
            )
            config.write_text(json.dumps(identities))
            config.chmod(0o600)
            self._spawn("s3", seaweedfs_command(data_dir, config, self.ports), {})
        wait_for(
            self._s3_ready,
            f"SeaweedFS S3 on {self.s3_url}",
            START_TIMEOUTS["s3"],
            self.log_path("s3"),
        )

    def _s3_ready(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        from trainyard.core import storage
        from trainyard.core.settings import Settings

        try:
            storage.ensure_buckets(Settings.from_env(self.client_env()), list(self.buckets))
        except (BotoCoreError, ClientError):
            return False
        return True

    def start_mlflow(self, backend_store_uri: str | None = None) -> None:
        """MLflow tracking server; artifacts proxied to ``s3://mlflow/artifacts``."""
        if self.running_pid("mlflow") is None:
            self._check_ports("the MLflow server", {"mlflow": self.ports.mlflow})
            (self.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
            backend = backend_store_uri or f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"
            command = [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", backend,
                "--artifacts-destination", f"s3://{self.buckets[2]}/artifacts",
                "--host", HOST,
                "--port", str(self.ports.mlflow),
                "--workers", "2",
            ]  # fmt: skip
            env = {
                "AWS_ACCESS_KEY_ID": self.credentials.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": self.credentials.s3_secret_key,
                "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
                "AWS_DEFAULT_REGION": "us-east-1",
                **MLFLOW_SERVER_WITHOUT_JOBS,
                **mlflow_webhook_env(self.state_secret("mlflow-webhook.key", fernet_key)),
            }
            self._spawn("mlflow", command, env)
        wait_for(
            lambda: http_ok(f"{self.mlflow_url}/health"),
            f"MLflow server on {self.mlflow_url}",
            START_TIMEOUTS["mlflow"],
            self.log_path("mlflow"),
        )

    def start_airflow(self) -> None:
        """``airflow standalone`` (SQLite, LocalExecutor, no examples), known admin password."""
        env = {**self.client_env(), **self.airflow_env()}
        if self.running_pid("airflow") is None:
            p = self.ports
            self._check_ports(
                "Airflow",
                {
                    "airflow": p.airflow,
                    "airflow_worker_logs": p.airflow_worker_logs,
                    "airflow_trigger_logs": p.airflow_trigger_logs,
                },
            )
            home = Path(env["AIRFLOW_HOME"])
            home.mkdir(parents=True, exist_ok=True)
            passwords = home / "passwords.json"
            passwords.write_text(json.dumps({AIRFLOW_ADMIN: self.credentials.airflow_password}))
            passwords.chmod(0o600)
            self._spawn(
                "airflow", [str(Path(sys.executable).parent / "airflow"), "standalone"], env
            )
        wait_for(
            lambda: http_ok(f"{self.airflow_url}/api/v2/monitor/health"),
            f"Airflow API server on {self.airflow_url}",
            START_TIMEOUTS["airflow"],
            self.log_path("airflow"),
        )
        # The execution API (what task processes call) builds its versioned routes on its first
        # request (Cadwyn), several seconds that the first task of the first run would wait.
        wait_for(
            lambda: http_answers(f"{self.airflow_url}/execution/health"),
            f"Airflow execution API on {self.airflow_url}/execution/",
            START_TIMEOUTS["airflow"],
            self.log_path("airflow"),
        )

    def start_model_server(self) -> None:
        """``trainyard serve`` on ``ports.serving``, following every pipeline's champion.

        Ready to answer once ``/health`` does; ``/ready`` waits for champions (none before the
        first training).
        """
        if self.running_pid(MODEL_SERVER) is None:
            self._check_ports("the model server", {"serving": self.ports.serving})
            command = [sys.executable, "-m", "trainyard", "serve"]
            self._spawn(MODEL_SERVER, command, {**self.client_env(), **self.serving_env()})
        wait_for(
            lambda: http_ok(f"{self.serving_url}/health"),
            f"the model server on {self.serving_url}",
            START_TIMEOUTS[MODEL_SERVER],
            self.log_path(MODEL_SERVER),
        )

    def up(self, airflow: bool = True) -> None:
        """Start (or reuse) every service; safe to call again while they run.

        Args:
            airflow: Also start Airflow and the model server (the tests' stack needs neither).
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.start_s3()
        self.start_mlflow()
        if airflow:
            self.start_airflow()
            self.start_model_server()
        self.write_env_file()

    def down(self) -> list[str]:
        """Stop every service this state folder started.

        Returns:
            Names of the services that were running.
        """
        order = (MODEL_SERVER, "airflow", "mlflow")
        stopped = [
            name for name in order if self.stop(name, grace=40.0 if name == MODEL_SERVER else 10.0)
        ]
        if self.stop("s3", grace=5.0):
            stopped.append("s3")
        return stopped

    def status(self) -> dict[str, int | None]:
        """Service name -> PID (None when not running)."""
        return {name: self.running_pid(name) for name in ("s3", "mlflow", "airflow", MODEL_SERVER)}

    def with_ports(self, ports: Ports) -> Stack:
        """The same stack on other ports."""
        return replace(self, ports=ports)
