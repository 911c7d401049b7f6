"""Lineage: who ran what, on which data, with which code, and why.

Each record that takes part in a run (the run context, the snapshot, the validation report)
renders its own lineage tags; MLflow runs and registered versions carry their union.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from trainyard.core.settings import Settings

_REPO_DIR = Path(__file__).resolve().parents[3]
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


@cache
def git_commit(repo_dir: Path = _REPO_DIR) -> str:
    """The code version: ``TRAINYARD_GIT_COMMIT`` if set, else the checkout's HEAD.

    A checkout with uncommitted changes to tracked files gets a ``-dirty`` suffix; no git at all
    gives ``unknown``.
    """
    override = Settings.from_env().git_commit
    if override:
        return override
    try:
        head = subprocess.run(
            ["git", "-C", str(repo_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


@cache
def code_sha256(package_dir: Path = _PACKAGE_DIR, lock: Path | None = None) -> str:
    """The code's identity: sha256 of the runtime package's Python files and the dependency lock.

    Computed from the files the process runs, so it exists wherever the code does (an image
    without git included) and changes with any change to the code or a dependency pin, unlike a
    commit id that a build may not know.

    Args:
        package_dir: The ``trainyard`` package (default: the one imported).
        lock: The requirements lock (default: ``Settings.requirements_lock``); a missing file is
            hashed as "no lock".

    Returns:
        The hex digest.
    """
    lock = lock if lock is not None else Settings.from_env().requirements_lock
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(f"{path.relative_to(package_dir).as_posix()}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(b"requirements.lock\0")
    digest.update(lock.read_bytes() if lock.is_file() else b"(no lock)")
    return digest.hexdigest()


class RunContext(BaseModel):
    """Where a run comes from: the Airflow DAG and run (or the CLI) and the reason for it."""

    model_config = ConfigDict(frozen=True)

    dag_id: str
    run_id: str
    trigger_reason: str
    git_commit: str
    #: The code's identity (:func:`code_sha256`), part of the training fingerprint.
    code_sha256: str = Field(default_factory=code_sha256)
    #: The drift report that triggered this run (a drift-triggered retrain), else None.
    drift_report_uri: str | None = None
    #: Who started it: the Airflow user of a manual run, ``schedule``, ``drift monitor``, or
    #: ``cli:<login>``; recorded with every alias move the run makes.
    actor: str = "unknown"

    @classmethod
    def for_cli(cls, pipeline: str, reason: str = "cli") -> RunContext:
        """A context for a run started from the command line."""
        from datetime import UTC, datetime

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return cls(
            dag_id=f"cli:{pipeline}",
            run_id=f"cli__{stamp}",
            trigger_reason=reason,
            git_commit=git_commit(),
            actor=f"cli:{_login()}",
        )

    def identity(self) -> dict[str, str]:
        """The tags that name this run (the DAG and run ids): how a retry finds its own work."""
        return {"airflow_dag_id": self.dag_id, "airflow_run_id": self.run_id}

    def tags(self) -> dict[str, str]:
        """Lineage tags naming the run, its reason and the code."""
        return {
            **self.identity(),
            "trigger_reason": self.trigger_reason,
            "drift_report_uri": self.drift_report_uri or "",
            "git_commit": self.git_commit,
            "code_sha256": self.code_sha256,
            "triggered_by": self.actor,
        }


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def training_fingerprint(snapshot_sha256: str, spec_sha256: str, code: str) -> str:
    """Identity of a training input: same data, same spec, same code give the same model.

    Args:
        snapshot_sha256: The training snapshot's hash.
        spec_sha256: The validated spec's hash.
        code: The code's identity (:func:`code_sha256`).
    """
    return hashlib.sha256(f"{snapshot_sha256}:{spec_sha256}:{code}".encode()).hexdigest()
