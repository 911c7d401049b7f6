"""Settings, S3 URIs, lineage, CLI and the embedded stack's port handling."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from trainyard.devstack import Ports, Stack, StackError
from trainyard.lineage import git_commit, training_fingerprint
from trainyard.settings import Settings
from trainyard.storage import S3Uri


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "TRAINYARD_RAW_BUCKET": "landing",
            "AWS_ENDPOINT_URL_S3": "http://s3.internal:9000",
            "TRAINYARD_PIPELINES_DIR": "/opt/specs",
        }
    )
    assert settings.raw_bucket == "landing"
    assert settings.artifacts_bucket == "trainyard"
    assert settings.s3_endpoint_url == "http://s3.internal:9000"
    assert settings.pipelines_dir == Path("/opt/specs")
    assert Settings.from_env({}).s3_endpoint_url is None


def test_s3_uri() -> None:
    uri = S3Uri.parse("s3://bucket/a/b.parquet")
    assert (uri.bucket, uri.key, str(uri)) == ("bucket", "a/b.parquet", "s3://bucket/a/b.parquet")
    for bad in ("http://x/y", "s3:///key"):
        with pytest.raises(ValueError):
            S3Uri.parse(bad)


def test_fingerprint_changes_with_any_input() -> None:
    base = training_fingerprint("a", "b", "c")
    assert base == training_fingerprint("a", "b", "c")
    assert len({base, training_fingerprint("x", "b", "c"), training_fingerprint("a", "x", "c"),
                training_fingerprint("a", "b", "x")}) == 4  # fmt: skip


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


def test_ports_from_environment() -> None:
    assert Ports.from_env({"TRAINYARD_AIRFLOW_PORT": "9090"}).airflow == 9090
    assert Ports.from_env({}).s3 == 8333


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    first = Stack(state_dir=tmp_path).credentials
    assert Stack(state_dir=tmp_path).credentials == first
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0


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
        env={**__import__("os").environ, "TRAINYARD_PIPELINES_DIR": str(tmp_path)},
    )
    assert bad.returncode == 2
    assert "bad.yaml" in bad.stderr and "field 'source'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_s3_client_follows_credential_changes(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that switches keys (or S3 servers) must not keep using the first keys."""
    from botocore.exceptions import ClientError
    from trainyard import storage

    assert storage.client(settings).list_buckets()["Buckets"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        storage.client(settings).list_buckets()
    monkeypatch.undo()
    assert storage.client(settings).list_buckets()["Buckets"]
