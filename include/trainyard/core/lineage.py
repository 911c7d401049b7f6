"""Lineage: who ran what, on which data, with which code, and why.

Each record that takes part in a run (the run context, the snapshot, the validation report)
renders its own lineage tags; MLflow runs and registered versions carry their union.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from trainyard.core.settings import Settings

_REPO_DIR = Path(__file__).resolve().parents[3]


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


class RunContext(BaseModel):
    """Where a run comes from: the Airflow DAG and run (or the CLI) and the reason for it."""

    model_config = ConfigDict(frozen=True)

    dag_id: str
    run_id: str
    trigger_reason: str
    git_commit: str
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
            "triggered_by": self.actor,
        }


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def training_fingerprint(snapshot_sha256: str, spec_sha256: str, commit: str) -> str:
    """Identity of a training input: same data, same spec, same code give the same model."""
    return hashlib.sha256(f"{snapshot_sha256}:{spec_sha256}:{commit}".encode()).hexdigest()
