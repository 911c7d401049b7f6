"""Running local services as detached processes: ports, spawning, waiting, stopping.

Local tooling only (the embedded stack, the production shape without Docker, the tests and
benchmarks); the runtime package never imports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HOST = "127.0.0.1"


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
    serving: int = 8000

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
        return cls(*free_ports(len(asdict(cls()))))


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def http_answers(url: str) -> bool:
    """Whether a server answers a GET of ``url`` at all (any status), within 30 s."""
    try:
        with urllib.request.urlopen(url, timeout=30):
            return True
    except urllib.error.HTTPError:
        return True
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


def free_ports(count: int) -> list[int]:
    """``count`` ports the OS reports free right now."""
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


class ServiceRunner:
    """Starts and stops named services of one state folder; their PIDs and logs live there."""

    state_dir: Path

    def _pid_path(self, name: str) -> Path:
        return self.state_dir / "run" / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        """Where a service's output goes."""
        return self.state_dir / "logs" / f"{name}.log"

    def running_pid(self, name: str) -> int | None:
        """PID of a service this folder started that is still alive."""
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


def s3_identities(access_key: str, secret_key: str) -> dict:
    """SeaweedFS ``-s3.config`` document with one admin identity."""
    return {
        "identities": [
            {
                "name": "trainyard",
                "credentials": [
                    {
                        "accessKey": access_key,
                        "secretKey": secret_key,
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
