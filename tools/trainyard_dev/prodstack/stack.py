"""The production shape without Docker: the services of ``docker-compose.yaml`` as local processes.

Airflow runs as separate processes, as in compose: ``api-server``, ``scheduler``,
``dag-processor``, ``triggerer`` and one or more ``celery worker`` s (CeleryExecutor), on a
PostgreSQL metadata database created for the run and a Redis database index of its own as the
Celery broker. MLflow runs on PostgreSQL (tracking store and basic-auth users, each in its own
database) with artifacts proxied to SeaweedFS S3, and its basic-auth app on.

Three pieces are shared with the compose file, so running this proves them:

- ``docker/postgres/init-databases.sh`` creates the roles and databases (psql, here against the
  local server);
- ``docker/mlflow/entrypoint.sh`` is the MLflow service's command;
- ``trainyard buckets`` is the one-shot S3 set-up.

Configuration is the same set of variables as compose's ``.env`` (see ``.env.example``): S3 keys,
MLflow and Airflow admin credentials and Airflow's secrets are read from the environment when set,
otherwise generated once per state folder and kept there (never in the repository). The local
servers come from :class:`trainyard_dev.config.StackConfig` (``TRAINYARD_POSTGRES_URL``,
``TRAINYARD_REDIS_URL``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trainyard_dev.config import REPO_DIR, StackConfig
from trainyard_dev.devstack import MODEL_SERVER, Stack, mlflow_webhook_env
from trainyard_dev.prodstack.credentials import ProdSecrets
from trainyard_dev.prodstack.servers import (
    PostgresServer,
    claim_redis_db,
    redis_db_url,
    redis_reachable,
    release_redis_db,
)
from trainyard_dev.services import (
    HOST,
    Ports,
    StackError,
    free_ports,
    http_ok,
    log_tail,
    seaweedfs_command,
    wait_for,
)

POSTGRES_INIT_SCRIPT = REPO_DIR / "docker" / "postgres" / "init-databases.sh"
MLFLOW_ENTRYPOINT = REPO_DIR / "docker" / "mlflow" / "entrypoint.sh"
TRAINING_QUEUE = "training"
DEFAULT_QUEUE = "default"
STATE_FILE = "prodstack.json"
SCHEDULER = "airflow-scheduler"
API_SERVER = "airflow-api-server"
DAG_PROCESSOR = "airflow-dag-processor"
TRIGGERER = "airflow-triggerer"
# Inherited variables of these families are dropped before a service starts: each service gets
# exactly the configuration this module gives it (a test session may have others exported).
_PRIVATE_PREFIXES = ("AIRFLOW__", "AIRFLOW_HOME", "AWS_", "MLFLOW_", "TRAINYARD_")


@dataclass
class ProdStack(Stack):
    """The production shape rooted at ``state_dir`` (see the module docstring).

    ``up`` provisions databases and a Redis index, starts every service and waits until each is
    healthy; ``down`` stops them and drops the databases. What ``up`` chose (run name, Redis
    index, ports) is kept in ``<state_dir>/prodstack.json`` so a later ``down`` finds it.
    """

    run_name: str = ""
    postgres_url: str = field(default_factory=lambda: StackConfig.from_env().postgres_url)
    redis_url: str = field(default_factory=lambda: StackConfig.from_env().redis_url)
    workers: int = 1
    worker_concurrency: int = 2
    worker_queues: tuple[str, ...] = (DEFAULT_QUEUE, TRAINING_QUEUE)
    pipelines_dir: Path | None = None
    environ: dict[str, str] | None = None
    airflow_overrides: dict[str, str] = field(default_factory=dict)
    redis_db: int | None = None
    extra_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        state = self._read_state()
        if state:
            self.run_name = state["run_name"]
            self.redis_db = state["redis_db"]
            self.ports = Ports(**state["ports"])
            self.extra_ports = state["extra_ports"]
            self.workers = state["workers"]
        if not self.run_name:
            self.run_name = "trainyard_" + secrets.token_hex(4)
        self.secrets = ProdSecrets.load(self.state_dir / "secrets.json", self.environ)
        self.credentials = replace(
            self.credentials,
            s3_access_key=self.secrets.s3_access_key,
            s3_secret_key=self.secrets.s3_secret_key,
            airflow_password=self.secrets.airflow_admin_password,
        )
        if self.pipelines_dir is None:
            from trainyard.core.settings import Settings

            self.pipelines_dir = Settings.from_env(self.environ).pipelines_dir
        self.postgres = PostgresServer(self.postgres_url)

    # ---- names, addresses, environment ------------------------------------------------------

    @property
    def databases(self) -> dict[str, str]:
        """Purpose -> database name (all prefixed by the run name)."""
        return {
            "airflow": f"{self.run_name}_airflow",
            "mlflow": f"{self.run_name}_mlflow",
            "mlflow_auth": f"{self.run_name}_mlflow_auth",
        }

    @property
    def roles(self) -> dict[str, str]:
        """Service -> PostgreSQL role owning its databases."""
        return {"airflow": f"{self.run_name}_airflow", "mlflow": f"{self.run_name}_mlflow"}

    @property
    def worker_names(self) -> list[str]:
        """Service names of the Celery workers."""
        return [f"airflow-worker-{number}" for number in range(1, self.workers + 1)]

    @property
    def airflow_services(self) -> list[str]:
        """Every Airflow process, in start order."""
        return [API_SERVER, SCHEDULER, DAG_PROCESSOR, TRIGGERER, *self.worker_names]

    def _database_url(self, purpose: str, scheme: str) -> str:
        service = "airflow" if purpose == "airflow" else "mlflow"
        password = getattr(self.secrets, f"{service}_db_password")
        return self.postgres.database_url(
            self.databases[purpose], self.roles[service], password, scheme
        )

    @property
    def broker_url(self) -> str:
        """Celery broker: the run's own Redis database index."""
        if self.redis_db is None:
            raise StackError("no Redis database claimed yet; call provision() first")
        return redis_db_url(self.redis_url, self.redis_db)

    def client_env(self) -> dict[str, str]:
        """The embedded stack's variables plus the MLflow login (the server has basic auth)."""
        return {
            **super().client_env(),
            "MLFLOW_TRACKING_USERNAME": self.secrets.mlflow_username,
            "MLFLOW_TRACKING_PASSWORD": self.secrets.mlflow_password,
            "MLFLOW_ARTIFACTS_BUCKET": self.buckets[2],
            "TRAINYARD_PIPELINES_DIR": str(self.pipelines_dir),
        }

    def airflow_env(self) -> dict[str, str]:
        """The compose file's ``x-airflow-common`` environment, with local addresses."""
        env = super().airflow_env()
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._database_url(
                    "airflow", "postgresql+psycopg2"
                ),
                "AIRFLOW__CELERY__RESULT_BACKEND": self._database_url("airflow", "db+postgresql"),
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__CORE__FERNET_KEY": self.secrets.airflow_fernet_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.secrets.airflow_jwt_secret,
                "AIRFLOW__API__SECRET_KEY": self.secrets.airflow_api_secret_key,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": (
                    f"{self.secrets.airflow_admin_username}:admin"
                ),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": HOST,
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(
                    self.extra_ports["scheduler_health"]
                ),
                "TRAINYARD_TRAINING_QUEUE": TRAINING_QUEUE,
                **self.airflow_overrides,
            }
        )
        return env

    def mlflow_env(self) -> dict[str, str]:
        """The compose file's ``mlflow`` service environment, with local addresses."""
        return {
            "MLFLOW_BACKEND_STORE_URI": self._database_url("mlflow", "postgresql"),
            "MLFLOW_AUTH_DATABASE_URI": self._database_url("mlflow_auth", "postgresql"),
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{self.buckets[2]}/artifacts",
            "MLFLOW_AUTH_ADMIN_USERNAME": self.secrets.mlflow_username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.secrets.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secrets.mlflow_flask_secret_key,
            "MLFLOW_AUTH_CONFIG_PATH": str(self.state_dir / "mlflow" / "basic_auth.ini"),
            "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": self.secrets.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.secrets.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            **mlflow_webhook_env(self.secrets.mlflow_webhook_encryption_key),
        }

    def serving_env(self) -> dict[str, str]:
        """The compose file's ``model-server`` settings: the API key is required here."""
        return {
            **super().serving_env(),
            "TRAINYARD_SERVING_API_KEY": self.secrets.serving_api_key,
            "TRAINYARD_SERVING_WEBHOOK_SECRET": self.secrets.serving_webhook_secret,
        }

    # ---- state -------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        path = self.state_dir / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "run_name": self.run_name,
            "redis_db": self.redis_db,
            "ports": asdict(self.ports),
            "extra_ports": self.extra_ports,
            "workers": self.workers,
            "databases": self.databases,
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    # ---- provisioning ------------------------------------------------------------------------

    def check_servers(self) -> list[str]:
        """Why the local PostgreSQL or Redis cannot be used (empty when both are fine)."""
        problems = [self.postgres.reachable(), redis_reachable(self.redis_url)]
        return [problem for problem in problems if problem]

    def provision(self) -> None:
        """Create the run's roles and databases (the compose init script) and claim a Redis index.

        Raises:
            StackError: A server is unreachable or the init script failed (with its output).
        """
        if self._read_state() is not None:
            return
        problems = self.check_servers()
        if problems:
            raise StackError("cannot provision the production shape: " + "; ".join(problems))
        if shutil.which("psql") is None:
            raise StackError("psql (the PostgreSQL client) is needed to run " + _rel_init_script())
        env = {
            **os.environ,
            **self.postgres.psql_env(),
            "AIRFLOW_DB_NAME": self.databases["airflow"],
            "AIRFLOW_DB_USER": self.roles["airflow"],
            "AIRFLOW_DB_PASSWORD": self.secrets.airflow_db_password,
            "MLFLOW_DB_NAME": self.databases["mlflow"],
            "MLFLOW_AUTH_DB_NAME": self.databases["mlflow_auth"],
            "MLFLOW_DB_USER": self.roles["mlflow"],
            "MLFLOW_DB_PASSWORD": self.secrets.mlflow_db_password,
        }
        self.redis_db = claim_redis_db(self.redis_url, self.run_name)
        names = ["scheduler_health", *[f"worker_{n}_logs" for n in range(2, self.workers + 1)]]
        self.extra_ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._write_state()  # from here on, `down` finds and removes what this run made
        result = subprocess.run(
            ["bash", str(POSTGRES_INIT_SCRIPT)], env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            self.deprovision()
            raise StackError(f"{_rel_init_script()} failed:\n{result.stdout}{result.stderr}")

    def deprovision(self) -> None:
        """Drop the run's databases and roles and empty its Redis index."""
        self.postgres.drop(list(self.databases.values()), list(self.roles.values()))
        if self.redis_db is not None:
            release_redis_db(self.redis_url, self.redis_db, self.run_name)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    # ---- services ----------------------------------------------------------------------------

    def service_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` over this process's environment minus the families a service gets explicitly,
        with this interpreter's bin folder first on PATH (``airflow``, ``celery``, ``weed``)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}
        bin_dir = str(Path(sys.executable).parent)
        return {**inherited, **env, "PATH": bin_dir + os.pathsep + inherited.get("PATH", "")}

    def start_s3(self) -> None:
        """SeaweedFS with its admin key pair from the environment, then the one-shot bucket set-up.

        The same as compose: the ``seaweedfs`` service and the ``s3-init`` service.
        """
        if self.running_pid("s3") is None:
            self._check_ports("SeaweedFS", self.ports.seaweedfs())
            data_dir = self.state_dir / "seaweedfs"
            data_dir.mkdir(parents=True, exist_ok=True)
            env = {
                "AWS_ACCESS_KEY_ID": self.secrets.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": self.secrets.s3_secret_key,
            }
            self._spawn("s3", seaweedfs_command(data_dir, None, self.ports), env)
        self._run_once(
            "the bucket set-up (compose's s3-init)",
            [sys.executable, "-m", "trainyard", "buckets", "--wait", "120"],
            self.client_env(),
            timeout=180,
        )

    def start_mlflow(self, backend_store_uri: str | None = None) -> None:
        """The MLflow server through the compose service's command (basic auth, Postgres, S3)."""
        if self.running_pid("mlflow") is None:
            self._check_ports("the MLflow server", {"mlflow": self.ports.mlflow})
            (self.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
            env = {
                **self.mlflow_env(),
                "MLFLOW_HOST": HOST,
                "MLFLOW_PORT": str(self.ports.mlflow),
                "MLFLOW_WORKERS": "2",
            }
            self._spawn("mlflow", ["bash", str(MLFLOW_ENTRYPOINT)], env)
        wait_for(
            lambda: http_ok(f"{self.mlflow_url}/health"),
            f"MLflow server on {self.mlflow_url}",
            240,
            self.log_path("mlflow"),
        )

    def _airflow_command(self, name: str) -> list[str]:
        airflow = str(Path(sys.executable).parent / "airflow")
        if name.startswith("airflow-worker-"):
            number = int(name.rsplit("-", 1)[1])
            return [
                airflow, "celery", "worker",
                "--queues", ",".join(self.worker_queues),
                "--concurrency", str(self.worker_concurrency),
                "--celery-hostname", f"celery@trainyard-worker-{number}",
            ]  # fmt: skip
        return [airflow, name.removeprefix("airflow-")]

    def _worker_env(self, name: str) -> dict[str, str]:
        """Workers after the first serve their logs on ports of their own."""
        number = int(name.rsplit("-", 1)[1])
        if number == 1:
            return {}
        port = self.extra_ports[f"worker_{number}_logs"]
        return {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)}

    def _run_once(self, what: str, command: list[str], env: dict[str, str], timeout: float) -> None:
        """Run a one-shot command (compose: a service that runs once, like ``airflow-init``).

        Raises:
            StackError: It failed, with the end of its output.
        """
        result = subprocess.run(
            command,
            env=self.service_env(env),
            capture_output=True,
            text=True,
            cwd=self.state_dir,
            timeout=timeout,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(f"{what} failed:\n{tail}")

    def migrate_airflow(self) -> None:
        """``airflow db migrate`` (compose: the ``airflow-init`` service).

        Raises:
            StackError: The migration failed, with the end of its output.
        """
        env = {**self.client_env(), **self.airflow_env()}
        Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        self._run_once("airflow db migrate", [airflow, "db", "migrate"], env, timeout=600)

    def start_airflow(self) -> None:
        """API server, scheduler, dag-processor, triggerer and the Celery workers, then wait."""
        env = {**self.client_env(), **self.airflow_env()}
        home = Path(env["AIRFLOW_HOME"])
        passwords = home / "passwords.json"
        if not any(self.running_pid(name) for name in self.airflow_services):
            self._check_ports(
                "Airflow",
                {
                    "airflow": self.ports.airflow,
                    "airflow_worker_logs": self.ports.airflow_worker_logs,
                    "airflow_trigger_logs": self.ports.airflow_trigger_logs,
                    **self.extra_ports,
                },
            )
            self.migrate_airflow()
            passwords.write_text(
                json.dumps(
                    {self.secrets.airflow_admin_username: self.secrets.airflow_admin_password}
                )
            )
            passwords.chmod(0o600)
        for name in self.airflow_services:
            if self.running_pid(name) is None:
                extra = self._worker_env(name) if name in self.worker_names else {}
                self._spawn(name, self._airflow_command(name), {**env, **extra})
        self.wait_for_airflow()

    def require_running(self, names: list[str]) -> None:
        """Raise at once when a service has exited (instead of timing out later).

        Raises:
            StackError: Naming the service, with the end of its log.
        """
        for name in names:
            if self.running_pid(name) is None:
                log = self.log_path(name)
                raise StackError(f"{name} exited; last lines of {log}:\n{log_tail(log)}")

    def wait_for_airflow(self, timeout: float = 300) -> None:
        """Until the API server reports every component healthy and each worker is ready.

        Raises:
            StackError: A process exited, or a component was not healthy within ``timeout``.
        """

        def alive_and(check: Callable[[], bool]) -> Callable[[], bool]:
            def probe() -> bool:
                self.require_running(self.airflow_services)
                return check()

            return probe

        health = f"{self.airflow_url}/api/v2/monitor/health"
        scheduler_health = f"http://{HOST}:{self.extra_ports['scheduler_health']}/health"
        checks: list[tuple[str, Callable[[], bool], str]] = [
            (f"Airflow API server on {self.airflow_url}", lambda: http_ok(health), API_SERVER),
            (
                "heartbeats of the Airflow scheduler, dag-processor and triggerer",
                lambda: _all_healthy(health),
                SCHEDULER,
            ),
            ("the scheduler's health server", lambda: http_ok(scheduler_health), SCHEDULER),
        ]
        for name in self.worker_names:
            log = self.log_path(name)
            checks.append(
                (f"Celery worker {name}", lambda log=log: _log_contains(log, " ready."), name)
            )
        for what, check, service in checks:
            wait_for(alive_and(check), what, timeout, self.log_path(service))

    def up(self, airflow: bool = True) -> None:
        """Provision (once), start or reuse every service, wait until healthy."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.provision()
        super().up(airflow)

    def stop_services(self) -> list[str]:
        """Stop every process, scheduler first so nothing new is queued.

        Returns:
            Names of the services that were running.
        """
        order = [SCHEDULER, *self.worker_names, TRIGGERER, DAG_PROCESSOR, API_SERVER, "mlflow"]
        # The model server first: its graceful shutdown writes the prediction log to S3.
        stopped = [MODEL_SERVER] if self.stop(MODEL_SERVER, grace=40.0) else []
        stopped += [name for name in order if self.stop(name)]
        if self.stop("s3", grace=5.0):
            stopped.append("s3")
        return stopped

    def down(self) -> list[str]:
        """Stop every service, drop the run's databases and empty its Redis index.

        Returns:
            Names of the services that were running.
        """
        stopped = self.stop_services()
        self.deprovision()
        return stopped

    def status(self) -> dict[str, int | None]:
        """Service name -> PID (None when not running)."""
        services = ("s3", "mlflow", *self.airflow_services, MODEL_SERVER)
        return {name: self.running_pid(name) for name in services}

    def api(self) -> Any:
        """An authenticated Airflow REST client."""
        from trainyard_dev.airflow_api import AirflowApi

        return AirflowApi(
            self.airflow_url,
            self.secrets.airflow_admin_username,
            self.secrets.airflow_admin_password,
        )


def _rel_init_script() -> str:
    return str(POSTGRES_INIT_SCRIPT.relative_to(REPO_DIR))


def _all_healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            report = json.loads(response.read())
    except (OSError, ValueError):
        return False
    components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((report.get(name) or {}).get("status") == "healthy" for name in components)


def _log_contains(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


# ---- command line ------------------------------------------------------------------------------
