"""The embedded stack: SeaweedFS (S3), an MLflow tracking server and ``airflow standalone``.

Everything binds to 127.0.0.1 and keeps its state under one folder (``.stack/`` by default).
Services run detached, so they outlive the command that started them, until ``down``.
The test suite uses the same code with free ports and a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
AIRFLOW_ADMIN = "admin"


class StackError(RuntimeError):
    """A service could not be started or reached; the message says which and why."""


@dataclass(frozen=True)
class Ports:
    """Every port the stack listens on (SeaweedFS alone opens eight)."""

    airflow: int = 8080
    mlflow: int = 5000
    s3: int = 8333
    s3_grpc: int = 18333
    weed_master: int = 9333
    weed_master_grpc: int = 19333
    weed_volume: int = 9340
    weed_volume_grpc: int = 19340
    weed_filer: int = 8888
    weed_filer_grpc: int = 18888
    airflow_worker_logs: int = 8793
    airflow_trigger_logs: int = 8794

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Ports:
        """Defaults, overridable by ``TRAINYARD_<NAME>_PORT`` (e.g. TRAINYARD_AIRFLOW_PORT)."""
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            **{
                name: int(env.get(f"TRAINYARD_{name.upper()}_PORT", value))
                for name, value in asdict(defaults).items()
            }
        )

    def seaweedfs(self) -> dict[str, int]:
        """The eight ports ``weed server`` opens (master, volume, filer and S3, each with gRPC)."""
        return {
            "s3": self.s3,
            "s3_grpc": self.s3_grpc,
            "weed_master": self.weed_master,
            "weed_master_grpc": self.weed_master_grpc,
            "weed_volume": self.weed_volume,
            "weed_volume_grpc": self.weed_volume_grpc,
            "weed_filer": self.weed_filer,
            "weed_filer_grpc": self.weed_filer_grpc,
        }

    @classmethod
    def free(cls) -> Ports:
        """Ports the OS reports free right now (for tests and benchmarks)."""
        sockets = []
        try:
            for _ in asdict(cls()):
                sock = socket.socket()
                sock.bind((HOST, 0))
                sockets.append(sock)
            return cls(*[sock.getsockname()[1] for sock in sockets])
        finally:
            for sock in sockets:
                sock.close()


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_for(check: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    """Poll ``check`` until it is true.

    Raises:
        StackError: Timed out; includes the tail of the service's log.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = ""
    if log is not None and log.exists():
        tail = f"\n--- last lines of {log} ---\n{log_tail(log)}"
    raise StackError(f"{what} did not become ready within {timeout:.0f} s{tail}")


def log_tail(log: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a service's log ("" when it has none yet)."""
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


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


@dataclass
class Stack:
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
        }

    def write_env_file(self) -> Path:
        """``<state>/stack.env``: ``source`` it to point the CLI at this stack."""
        path = self.state_dir / "stack.env"
        path.write_text("".join(f"export {k}={v}\n" for k, v in sorted(self.client_env().items())))
        path.chmod(0o600)
        return path

    # ---- process management --------------------------------------------------------------

    def _pid_path(self, name: str) -> Path:
        return self.state_dir / "run" / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        """Where a service's output goes."""
        return self.state_dir / "logs" / f"{name}.log"

    def running_pid(self, name: str) -> int | None:
        """PID of a service this stack started that is still alive."""
        path = self._pid_path(name)
        if not path.exists():
            return None
        pid = int(path.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink()
            return None
        return pid

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        self._pid_path(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.service_env(env),
                cwd=self.state_dir,
                start_new_session=True,
            )
        self._pid_path(name).write_text(str(process.pid))

    def service_env(self, env: dict[str, str]) -> dict[str, str]:
        """A service's environment: ``env`` over this process's, this interpreter's bin first on
        PATH (``airflow``, ``weed``)."""
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}

    def _check_ports(self, name: str, ports: dict[str, int]) -> None:
        taken = {label: port for label, port in ports.items() if port_in_use(port)}
        if taken:
            listing = ", ".join(f"{port} ({label})" for label, port in taken.items())
            hint = ", ".join(f"TRAINYARD_{label.upper()}_PORT" for label in taken)
            raise StackError(
                f"cannot start {name}: port(s) {listing} already in use by another process. "
                f"Stop that process or choose other ports with {hint}."
            )

    def stop(self, name: str, grace: float = 10.0) -> bool:
        """Stop a service and its children: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns:
            Whether it was running.
        """
        pid = self.running_pid(name)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, grace):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        # Children that outlived the group leader (e.g. API server workers) go too.
        _signal_group(pid, signal.SIGKILL)
        self._pid_path(name).unlink(missing_ok=True)
        return True

    # ---- services --------------------------------------------------------------------------

    def start_s3(self) -> None:
        """SeaweedFS with S3 on ``ports.s3``, keys from the credentials file, buckets made."""
        if self.running_pid("s3") is None:
            self._check_ports("SeaweedFS", self.ports.seaweedfs())
            data_dir = self.state_dir / "seaweedfs"
            data_dir.mkdir(parents=True, exist_ok=True)
            config = self.state_dir / "s3-identities.json"
            config.write_text(json.dumps(s3_identities(self.credentials)))
            config.chmod(0o600)
            self._spawn("s3", seaweedfs_command(data_dir, config, self.ports), {})
        wait_for(self._s3_ready, f"SeaweedFS S3 on {self.s3_url}", 90, self.log_path("s3"))

    def _s3_ready(self) -> bool:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=self.credentials.s3_access_key,
            aws_secret_access_key=self.credentials.s3_secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            for bucket in self.buckets:
                if bucket not in existing:
                    s3.create_bucket(Bucket=bucket)
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
            }
            self._spawn("mlflow", command, env)
        wait_for(
            lambda: _http_ok(f"{self.mlflow_url}/health"),
            f"MLflow server on {self.mlflow_url}",
            120,
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
            lambda: _http_ok(f"{self.airflow_url}/api/v2/monitor/health"),
            f"Airflow API server on {self.airflow_url}",
            240,
            self.log_path("airflow"),
        )

    def up(self, airflow: bool = True) -> None:
        """Start (or reuse) every service; safe to call again while they run."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.start_s3()
        self.start_mlflow()
        if airflow:
            self.start_airflow()
        self.write_env_file()

    def down(self) -> list[str]:
        """Stop every service this state folder started.

        Returns:
            Names of the services that were running.
        """
        stopped = [name for name in ("airflow", "mlflow") if self.stop(name)]
        if self.stop("s3", grace=5.0):
            stopped.append("s3")
        return stopped

    def status(self) -> dict[str, int | None]:
        """Service name -> PID (None when not running)."""
        return {name: self.running_pid(name) for name in ("s3", "mlflow", "airflow")}

    def with_ports(self, ports: Ports) -> Stack:
        """The same stack on other ports."""
        return replace(self, ports=ports)


def s3_identities(credentials: Credentials) -> dict:
    """SeaweedFS ``-s3.config`` document with one admin identity."""
    return {
        "identities": [
            {
                "name": "trainyard",
                "credentials": [
                    {
                        "accessKey": credentials.s3_access_key,
                        "secretKey": credentials.s3_secret_key,
                    }
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def seaweedfs_command(
    data_dir: Path, s3_config: Path | None, p: Ports, bind: str = HOST
) -> list[str]:
    """``weed server`` with master, volume, filer and S3, every port pinned.

    With ``s3_config=None`` the S3 gateway takes its admin key pair from ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` in its environment (what the compose file and the production-shape
    run do) instead of an identities file.
    """
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or "weed"
    return [
        weed, "server",
        f"-dir={data_dir}",
        f"-ip={HOST}", f"-ip.bind={bind}",
        f"-master.port={p.weed_master}", f"-master.port.grpc={p.weed_master_grpc}",
        "-master.volumeSizeLimitMB=1024", "-master.telemetry=false",
        f"-volume.port={p.weed_volume}", f"-volume.port.grpc={p.weed_volume_grpc}",
        "-volume.max=0",
        "-filer", f"-filer.port={p.weed_filer}", f"-filer.port.grpc={p.weed_filer_grpc}",
        "-s3", f"-s3.port={p.s3}", f"-s3.port.grpc={p.s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        *([f"-s3.config={s3_config}"] if s3_config is not None else []),
    ]  # fmt: skip


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait for a process to exit (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except OSError:
            return True
        time.sleep(0.2)
    return False
