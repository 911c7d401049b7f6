"""The CLI as a process, git-based lineage, port handling and S3 credentials on real services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trainyard.core.lineage import git_commit
from trainyard.core.settings import Settings
from trainyard_dev.devstack import Stack
from trainyard_dev.services import Ports, StackError


def test_git_commit_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    git_commit.cache_clear()
    monkeypatch.setenv("TRAINYARD_GIT_COMMIT", "abc123")
    try:
        assert git_commit() == "abc123"
        monkeypatch.delenv("TRAINYARD_GIT_COMMIT")
        git_commit.cache_clear()
        assert git_commit(Path("/")) == "unknown"
        assert len(git_commit().removesuffix("-dirty")) == 40
    finally:
        git_commit.cache_clear()


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    ports = Ports.free()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports.mlflow))
        blocker.listen()
        stack = Stack(state_dir=tmp_path, ports=ports)
        with pytest.raises(StackError, match=f"port\\(s\\) {ports.mlflow} \\(mlflow\\)") as error:
            stack.start_mlflow()
    assert "TRAINYARD_MLFLOW_PORT" in str(error.value)
    assert stack.status()["mlflow"] is None


def test_cli_checks_every_spec_and_reports_bad_ones(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "trainyard", "specs"], capture_output=True, text=True, check=True
    )
    assert "churn: ok" in ok.stdout and "breast_cancer: ok" in ok.stdout

    (tmp_path / "bad.yaml").write_text("name: bad\n")
    bad = subprocess.run(
        [sys.executable, "-m", "trainyard", "specs"],
        capture_output=True,
        text=True,
        env={**os.environ, "TRAINYARD_PIPELINES_DIR": str(tmp_path)},
    )
    assert bad.returncode == 2
    assert "bad.yaml" in bad.stderr and "field 'source'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_s3_client_follows_credential_changes(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that switches keys (or S3 servers) must not keep using the first keys."""
    from botocore.exceptions import ClientError

    from trainyard.core import storage

    assert storage.client(settings).list_buckets()["Buckets"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        storage.client(Settings.from_env()).list_buckets()
    monkeypatch.undo()
    assert storage.client(Settings.from_env()).list_buckets()["Buckets"]


def test_the_stack_mlflow_server_starts_no_job_consumers(stack) -> None:
    import psutil

    server = psutil.Process(stack.running_pid("mlflow"))
    commands = [" ".join(child.cmdline()) for child in server.children(recursive=True)]
    assert commands, "the MLflow server runs its web workers as child processes"
    assert not [command for command in commands if "huey" in command], commands
