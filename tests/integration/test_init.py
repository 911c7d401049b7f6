"""``trainyard init`` on data in the session's S3: the drafts load, pass ``specs``, train and
register (real S3 and MLflow server), and existing files are never overwritten."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from tests.support import loans_frame
from trainyard import cli
from trainyard.core import storage
from trainyard.data.draft import locate
from trainyard_dev.churn import generate_day


def _project(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(root / "pipelines"))
    monkeypatch.setenv("TRAINYARD_EXPECTATIONS_DIR", str(root / "expectations"))


def test_init_drafts_a_spec_and_suite_that_train_and_register(
    settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from mlflow import MlflowClient

    storage.ensure_buckets(settings, [settings.raw_bucket])
    uri = f"s3://{settings.raw_bucket}/t_init/applications.csv"
    storage.put_bytes(settings, uri, loans_frame(600).to_csv(index=False).encode())
    _project(monkeypatch, tmp_path)
    argv = ["init", "loans_draft", "--source", uri, "--target", "decision"]

    assert cli.main(argv) == 0

    printed = capsys.readouterr().out
    assert "target 'decision': classification, because it holds text or booleans" in printed
    assert "'application_id': id, an id-like name and unique per row" in printed
    assert "partitioning: none (a static source" in printed
    spec = yaml.safe_load((tmp_path / "pipelines" / "loans_draft.yaml").read_text())
    assert spec["source"] == {
        "kind": "files",
        "prefix": "t_init/applications.csv",
        "format": "csv",
        "bucket": settings.raw_bucket,
    }
    assert spec["schema"]["categorical_features"] == ["employment", "region"]
    suite = json.loads((tmp_path / "expectations" / "loans_draft.json").read_text())
    income = [e for e in suite["expectations"] if e["kwargs"].get("column") == "income"]
    assert {"type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "income", "mostly": 0.83}} in income  # fmt: skip

    # Refuses to overwrite, naming the file; the drafts are unchanged.
    before = (tmp_path / "pipelines" / "loans_draft.yaml").read_text()
    assert cli.main(argv) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "pipelines" / "loans_draft.yaml").read_text() == before

    assert cli.main(["specs"]) == 0
    assert cli.main(["run", "loans_draft", "--reason", "drafted by init"]) == 0
    champion = MlflowClient().get_model_version_by_alias("loans_draft", "champion")
    assert champion.tags["snapshot_uri"].startswith(f"s3://{settings.artifacts_bucket}/")


def test_init_recognises_partition_layouts(settings) -> None:
    storage.ensure_buckets(settings, [settings.raw_bucket])
    for i in range(2):
        day = date(2025, 6, 1) + timedelta(days=i)
        for hour in (0, 1):
            key = f"t_init_hours/dt={day:%Y%m%d}/hour={hour:02d}/part.csv"
            body = generate_day(day, 30).to_csv(index=False, sep=";").encode()
            storage.put_bytes(settings, f"s3://{settings.raw_bucket}/{key}", body)

    located = locate(settings, f"s3://{settings.raw_bucket}/t_init_hours")

    assert (located.format, located.partitioning) == ("csv", "dt=YYYYMMDD/hour=HH")
    assert len(located.keys) == 4
