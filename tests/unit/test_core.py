"""Settings, S3 URIs, lineage fingerprints and the local stacks' configuration (no process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainyard.core.lineage import RunContext, code_sha256, training_fingerprint
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


def test_the_first_task_retry_waits_the_configured_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from trainyard.airflow.common import dag_arguments
    from trainyard.core.spec import load_spec

    spec = load_spec(Path(__file__).parents[2] / "include" / "pipelines" / "breast_cancer.yaml")
    monkeypatch.delenv("TRAINYARD_TASK_RETRY_DELAY", raising=False)
    assert dag_arguments(spec, timedelta(hours=1))["default_args"]["retry_delay"] == timedelta(
        seconds=30
    )
    monkeypatch.setenv("TRAINYARD_TASK_RETRY_DELAY", "2")
    assert dag_arguments(spec, timedelta(hours=1))["default_args"]["retry_delay"] == timedelta(
        seconds=2
    )


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


def test_code_identity_follows_the_package_sources_and_the_lock(tmp_path: Path) -> None:
    """Not the git commit: any change to a .py file or a pin changes it, nothing else does."""
    import trainyard

    package = tmp_path / "trainyard"
    shutil.copytree(Path(trainyard.__file__).parent, package)
    lock = tmp_path / "requirements.lock"
    lock.write_text("pandas==2.3.3\n")
    base = code_sha256(package, lock)
    assert base == code_sha256(Path(trainyard.__file__).parent, lock)  # a copy is the same code

    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    (package / "notes.txt").write_text("not code")
    assert code_sha256.__wrapped__(package, lock) == base

    source = package / "training" / "gate.py"
    source.write_text(source.read_text() + "\n# a change\n")
    changed_code = code_sha256.__wrapped__(package, lock)
    lock.write_text("pandas==2.3.2\n")
    changed_lock = code_sha256.__wrapped__(package, lock)
    assert len({base, changed_code, changed_lock}) == 3
    assert code_sha256.__wrapped__(package, tmp_path / "absent.lock") != changed_lock


def test_the_run_context_carries_the_code_identity_apart_from_the_commit() -> None:
    context = RunContext(dag_id="d", run_id="r", trigger_reason="t", git_commit="unknown")
    assert context.code_sha256 == code_sha256()
    assert context.tags()["code_sha256"] == code_sha256()
    assert context.tags()["git_commit"] == "unknown"
    assert Settings.from_env({"TRAINYARD_REQUIREMENTS_LOCK": "/x.lock"}).requirements_lock == Path(
        "/x.lock"
    )
    assert Settings.from_env({}).requirements_lock.is_file()


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
