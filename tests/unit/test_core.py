"""Settings, S3 URIs, lineage fingerprints and the local stacks' configuration (no process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainyard.core.lineage import training_fingerprint
from trainyard.core.settings import Settings
from trainyard.core.storage import S3Uri
from trainyard_dev.config import StackConfig
from trainyard_dev.devstack import Stack


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


def test_stack_configuration_comes_from_the_environment() -> None:
    config = StackConfig.from_env(
        {"TRAINYARD_AIRFLOW_PORT": "9090", "TRAINYARD_STATE_DIR": "/tmp/x"}
    )
    assert config.ports.airflow == 9090
    assert config.state_dir == Path("/tmp/x")
    assert StackConfig.from_env({}).ports.s3 == 8333


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    first = Stack(state_dir=tmp_path).credentials
    assert Stack(state_dir=tmp_path).credentials == first
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0
