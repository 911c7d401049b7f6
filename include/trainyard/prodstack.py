"""The production shape without Docker: the services of ``docker-compose.yaml`` as local processes.

Airflow runs as separate processes, as in compose: ``api-server``, ``scheduler``,
``dag-processor``, ``triggerer`` and one or more ``celery worker`` s (CeleryExecutor), on a
PostgreSQL metadata database created for the run and a Redis database index of its own as the
Celery broker. MLflow runs on PostgreSQL (tracking store and basic-auth users, each in its own
database) with artifacts proxied to SeaweedFS S3, and its basic-auth app on.

Three pieces are shared with the compose file, so running this proves them:

- ``docker/postgres/init-databases.sh`` creates the roles and databases (psql, here against the
  local server);
- ``python -m trainyard.prodstack mlflow-server`` is the MLflow service's command;
- ``python -m trainyard.prodstack init-buckets`` is the one-shot S3 set-up.

Configuration is the same set of variables as compose's ``.env`` (see ``.env.example``): S3 keys,
MLflow and Airflow admin credentials and Airflow's secrets are read from the environment when set,
otherwise generated once per state folder and kept there (never in the repository). Local
servers: ``TRAINYARD_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, a
role allowed to create roles and databases) and ``TRAINYARD_REDIS_URL`` (default
``redis://127.0.0.1:6379``).

    python -m trainyard.prodstack up|demo|status|down     (make prod-local / prod-local-down)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from trainyard.devstack import (
    HOST,
    REPO_DIR,
    Ports,
    Stack,
    StackError,
    _http_ok,
    log_tail,
    seaweedfs_command,
    wait_for,
)

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
POSTGRES_INIT_SCRIPT = REPO_DIR / "docker" / "postgres" / "init-databases.sh"
REDIS_CLAIM_KEY = "trainyard:prodstack:owner"
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


# ---- secrets: the credentials of .env ---------------------------------------------------------


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
            stored = cls(**json.loads(path.read_text()))
        else:
            stored = cls.generate()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(asdict(stored), indent=2))
            path.chmod(0o600)
        overrides = {
            name: env[variable] for name, variable in cls.ENV_NAMES.items() if env.get(variable)
        }
        return replace(stored, **overrides)


# ---- PostgreSQL and Redis ---------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server reached through an admin URL (a role that may create databases)."""

    url: str

    @property
    def parts(self) -> urllib.parse.SplitResult:
        """The URL, split."""
        return urllib.parse.urlsplit(self.url)

    def database_url(self, database: str, user: str, password: str, scheme: str) -> str:
        """URL of one database for one role, e.g. ``postgresql+psycopg2://u:p@host:5432/db``."""
        parts = self.parts
        credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
        return f"{scheme}://{credentials}@{parts.hostname}:{parts.port or 5432}/{database}"

    def psql_env(self) -> dict[str, str]:
        """libpq variables pointing ``psql`` at this server as the admin role."""
        parts = self.parts
        env = {
            "PGHOST": parts.hostname or HOST,
            "PGPORT": str(parts.port or 5432),
            "POSTGRES_USER": urllib.parse.unquote(parts.username or "postgres"),
            "POSTGRES_DB": parts.path.lstrip("/") or "postgres",
        }
        if parts.password:
            env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
        return env

    def reachable(self) -> str | None:
        """None when the admin role can connect, else why not."""
        import psycopg2

        try:
            psycopg2.connect(self.url, connect_timeout=3).close()
        except psycopg2.Error as error:
            return f"PostgreSQL at {self.parts.hostname}:{self.parts.port or 5432}: {error}".strip()
        return None

    def drop(self, databases: list[str], roles: list[str]) -> None:
        """Drop databases (closing their connections) and then roles; missing ones are fine."""
        import psycopg2
        from psycopg2 import sql

        connection = psycopg2.connect(self.url, connect_timeout=5)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for database in databases:
                    cursor.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(database)
                        )
                    )
                for role in roles:
                    cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        finally:
            connection.close()

    def existing(self, databases: list[str]) -> list[str]:
        """Which of these databases exist."""
        import psycopg2

        connection = psycopg2.connect(self.url, connect_timeout=5)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (databases,)
                )
                return sorted(row[0] for row in cursor.fetchall())
        finally:
            connection.close()


def redis_reachable(url: str) -> str | None:
    """None when Redis answers PING, else why not."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis at {url}: {error}"
    return None


def claim_redis_db(url: str, owner: str) -> int:
    """Claim an empty Redis database index for this run (highest first; 0 is left alone).

    Returns:
        The index; it holds the key ``trainyard:prodstack:owner`` = ``owner`` until released.

    Raises:
        StackError: Every index is in use.
    """
    import redis

    server = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        count = int(server.config_get("databases").get("databases", 16))
    except redis.ResponseError:  # CONFIG disabled on managed servers
        count = 16
    for index in range(count - 1, 0, -1):
        database = redis.Redis.from_url(url, db=index, socket_connect_timeout=3)
        if database.dbsize() == 0 and database.set(REDIS_CLAIM_KEY, owner, nx=True):
            return index
    raise StackError(f"no empty Redis database index left on {url} (checked 1..{count - 1})")


def release_redis_db(url: str, index: int, owner: str) -> bool:
    """Empty the database index if this run still owns it.

    Returns:
        Whether it was flushed.
    """
    import redis

    database = redis.Redis.from_url(url, db=index, socket_connect_timeout=3)
    if database.get(REDIS_CLAIM_KEY) != owner.encode():
        return False
    database.flushdb()
    return True


def redis_db_url(url: str, index: int) -> str:
    """The server URL with its path set to a database index."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{index}"))


# ---- the one-shot and long-running commands shared with docker-compose.yaml -------------------


def ensure_buckets(
    buckets: list[str], environ: dict[str, str] | None = None, timeout: float = 120.0
) -> list[str]:
    """Create the buckets that do not exist yet, waiting for S3 to answer first.

    Endpoint and keys come from ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY`` in ``environ`` (default: ``os.environ``).

    Returns:
        The buckets created.

    Raises:
        StackError: S3 did not answer within ``timeout`` seconds, with the last error.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from trainyard.settings import Settings

    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.region,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
            created = [name for name in buckets if name not in existing]
            for name in created:
                s3.create_bucket(Bucket=name)
            return created
        except (BotoCoreError, ClientError) as error:
            if time.monotonic() > deadline:
                raise StackError(
                    f"S3 at {settings.s3_endpoint_url} did not accept bucket creation within "
                    f"{timeout:.0f} s: {error}"
                ) from error
            time.sleep(1)


def bucket_names(environ: dict[str, str] | None = None) -> list[str]:
    """Raw data, trainyard artifacts and MLflow artifacts buckets, from the environment."""
    from trainyard.settings import Settings

    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    return [
        settings.raw_bucket,
        settings.artifacts_bucket,
        env.get("MLFLOW_ARTIFACTS_BUCKET", "mlflow"),
    ]


def mlflow_auth_config(
    database_uri: str, default_permission: str = "READ", cache_ttl_seconds: int = 60
) -> str:
    """MLflow basic-auth configuration (``MLFLOW_AUTH_CONFIG_PATH``); no secret inside.

    The admin user is created on first start from ``MLFLOW_AUTH_ADMIN_USERNAME`` and
    ``MLFLOW_AUTH_ADMIN_PASSWORD``. Each server worker caches a verified login for
    ``cache_ttl_seconds``: checking the password hash costs ~0.3 s per request here, and a training
    run makes dozens of calls. A changed or deleted password can be honoured that much later by
    the other workers; 0 turns the cache off.
    """
    return (
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {database_uri}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_ttl_seconds}\n"
    )


def mlflow_server_command(host: str, port: int, workers: int, environ: dict[str, str]) -> list[str]:
    """``mlflow server`` on a database backend, artifacts proxied to S3, basic-auth app on.

    Raises:
        StackError: A required variable is missing.
    """
    missing = [
        name
        for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION")
        if not environ.get(name)
    ]
    if missing:
        raise StackError(f"the MLflow server needs {', '.join(missing)} in its environment")
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", environ["MLFLOW_BACKEND_STORE_URI"],
        "--artifacts-destination", environ["MLFLOW_ARTIFACTS_DESTINATION"],
        "--serve-artifacts",
        "--app-name", "basic-auth",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip


def exec_mlflow_server(host: str, port: int, workers: int) -> None:
    """Write the auth config from ``MLFLOW_AUTH_DATABASE_URI`` and replace this process by MLflow.

    Raises:
        StackError: ``MLFLOW_AUTH_DATABASE_URI`` or the admin credentials are missing.
    """
    env = dict(os.environ)
    missing = [
        name
        for name in (
            "MLFLOW_AUTH_DATABASE_URI",
            "MLFLOW_AUTH_ADMIN_USERNAME",
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY",
        )
        if not env.get(name)
    ]
    if missing:
        raise StackError(f"the MLflow server needs {', '.join(missing)} in its environment")
    config = Path(
        env.get("MLFLOW_AUTH_CONFIG_PATH")
        or Path(tempfile.gettempdir()) / f"mlflow-basic-auth-{os.getpid()}.ini"
    )
    config.write_text(
        mlflow_auth_config(
            env["MLFLOW_AUTH_DATABASE_URI"],
            env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ"),
            int(env.get("MLFLOW_AUTH_CACHE_TTL_SECONDS", "60")),
        )
    )
    config.chmod(0o600)
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    # Server-side jobs (GenAI evaluation, trace roll-ups) are unused here and start 7 processes.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = mlflow_server_command(host, port, workers, env)
    sys.stdout.flush()
    os.execve(command[0], command, env)


# ---- the stack ----------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class ProdStack(Stack):
    """The production shape rooted at ``state_dir`` (see the module docstring).

    ``up`` provisions databases and a Redis index, starts every service and waits until each is
    healthy; ``down`` stops them and drops the databases. What ``up`` chose (run name, Redis
    index, ports) is kept in ``<state_dir>/prodstack.json`` so a later ``down`` finds it.
    """

    run_name: str = ""
    postgres_url: str = field(
        default_factory=lambda: os.environ.get("TRAINYARD_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    redis_url: str = field(
        default_factory=lambda: os.environ.get("TRAINYARD_REDIS_URL", DEFAULT_REDIS_URL)
    )
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
            from trainyard.settings import Settings

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
        self.extra_ports = dict(zip(names, _free_ports(len(names)), strict=True))
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
        ensure_buckets(list(self.buckets), self.client_env(), timeout=120)

    def start_mlflow(self, backend_store_uri: str | None = None) -> None:
        """The MLflow server through the compose service's command (basic auth, Postgres, S3)."""
        if self.running_pid("mlflow") is None:
            self._check_ports("the MLflow server", {"mlflow": self.ports.mlflow})
            (self.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable, "-m", "trainyard.prodstack", "mlflow-server",
                "--host", HOST, "--port", str(self.ports.mlflow), "--workers", "2",
            ]  # fmt: skip
            self._spawn("mlflow", command, self.mlflow_env())
        wait_for(
            lambda: _http_ok(f"{self.mlflow_url}/health"),
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

    def migrate_airflow(self) -> None:
        """``airflow db migrate`` (compose: the ``airflow-init`` service).

        Raises:
            StackError: The migration failed, with the end of its output.
        """
        env = {**self.client_env(), **self.airflow_env()}
        Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        result = subprocess.run(
            [airflow, "db", "migrate"],
            env=self.service_env(env),
            capture_output=True,
            text=True,
            cwd=self.state_dir,
            timeout=600,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(f"airflow db migrate failed:\n{tail}")

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
            (f"Airflow API server on {self.airflow_url}", lambda: _http_ok(health), API_SERVER),
            (
                "heartbeats of the Airflow scheduler, dag-processor and triggerer",
                lambda: _all_healthy(health),
                SCHEDULER,
            ),
            ("the scheduler's health server", lambda: _http_ok(scheduler_health), SCHEDULER),
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
        stopped = [name for name in order if self.stop(name)]
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
        return {name: self.running_pid(name) for name in ("s3", "mlflow", *self.airflow_services)}

    def api(self) -> Any:
        """An authenticated Airflow REST client."""
        from trainyard.airflow_api import AirflowApi

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


def default_state_dir() -> Path:
    """``$TRAINYARD_PROD_STATE_DIR``, default ``.prod-local/`` in the repository."""
    return Path(os.environ.get("TRAINYARD_PROD_STATE_DIR", REPO_DIR / ".prod-local"))


def default_prod_stack(**kwargs: Any) -> ProdStack:
    """The stack in :func:`default_state_dir` on free ports (or those of its running services)."""
    return ProdStack(state_dir=default_state_dir(), ports=Ports.free(), **kwargs)


def print_access(stack: ProdStack) -> None:
    """URLs and logins."""
    s = stack.secrets
    print(
        "\n".join(
            [
                "",
                f"Airflow UI/API : {stack.airflow_url}  (user {s.airflow_admin_username}, "
                f"password {s.airflow_admin_password})",
                f"MLflow UI      : {stack.mlflow_url}  (user {s.mlflow_username}, "
                f"password {s.mlflow_password})",
                f"S3 (SeaweedFS) : {stack.s3_url}",
                f"Databases      : {', '.join(stack.databases.values())} on {stack.postgres_url}",
                f"Celery broker  : {stack.broker_url}",
                f"Client settings: source {stack.state_dir / 'stack.env'}",
                "Stop everything and drop the databases: make prod-local-down",
            ]
        )
    )


def run_demo(stack: ProdStack) -> int:
    """Start the production shape, land churn data, train through the REST API, show the result.

    Returns:
        Process exit code: 0 when the run succeeded.
    """
    from trainyard import demo

    print(f"starting the production shape under {stack.state_dir} ...", flush=True)
    stack.up()
    start, end = demo.land_demo_data(stack)
    print(f"landed churn partitions {start} .. {end}", flush=True)
    api = stack.api()
    api.wait_for_dag("train_churn")
    api.set_paused("train_churn", False)
    finished, outcome = demo.train_through_airflow(api, "train_churn", "make prod-local")
    print(f"\nrun {finished['dag_run_id']} of train_churn: {finished['state']}")
    if outcome is None:
        print(f"task states: {api.task_states('train_churn', finished['dag_run_id'])}")
    else:
        demo.print_outcome(outcome)
    print_access(stack)
    return 0 if outcome is not None else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m trainyard.prodstack COMMAND``."""
    parser = argparse.ArgumentParser(
        prog="python -m trainyard.prodstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "demo", "status", "down"):
        commands.add_parser(name)
    server = commands.add_parser("mlflow-server", help="the MLflow service's command")
    server.add_argument("--host", default="0.0.0.0")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=int, default=2)
    commands.add_parser("init-buckets", help="create the buckets named by the environment")
    args = parser.parse_args(argv)
    try:
        if args.command == "mlflow-server":
            exec_mlflow_server(args.host, args.port, args.workers)
        if args.command == "init-buckets":
            created = ensure_buckets(bucket_names())
            print(f"buckets ready: {', '.join(bucket_names())} (created: {created or 'none'})")
            return 0
        if args.command in ("status", "down") and not (default_state_dir() / STATE_FILE).exists():
            print(f"no production-shape run under {default_state_dir()}: nothing to do")
            return 0
        stack = default_prod_stack()
        if args.command == "demo":
            return run_demo(stack)
        if args.command == "up":
            stack.up()
            print_access(stack)
        elif args.command == "status":
            for name, pid in stack.status().items():
                print(f"{name:24} {'running, pid ' + str(pid) if pid else 'stopped'}")
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) or 'nothing'}; dropped {stack.run_name}_*")
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
