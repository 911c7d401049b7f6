"""Ingestion and validation against the session's SeaweedFS S3 (no Airflow, no MLflow)."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import REPO
from trainyard.core import storage
from trainyard.core.spec import load_spec, parse_spec
from trainyard.data.snapshots import (
    SnapshotUnavailableError,
    TrainingWindow,
    WindowError,
    load_snapshot,
)
from trainyard.data.sources import MissingPartitionsError, ingest, resolve_window
from trainyard.data.validation import load_suite_json, run_suite, validate_snapshot
from trainyard_dev.churn import Knobs, generate_day, land_days

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
START = date(2025, 3, 1)


def _unit_spec(prefix: str):
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data.update(name=prefix)
    data["source"]["prefix"] = prefix
    return parse_spec(data, Path(f"{prefix}.yaml"))


def test_resolve_window() -> None:
    window = resolve_window(CHURN, date(2026, 11, 21))
    assert (window.start, window.end) == (date(2026, 10, 24), date(2026, 11, 20))
    assert len(window.days()) == 28
    custom = resolve_window(CHURN, date(2026, 11, 21), date(2026, 1, 10), 3)
    assert custom.days() == [date(2026, 1, 8), date(2026, 1, 9), date(2026, 1, 10)]
    # 0 is an error, not "the spec's default"; a window may end on the run day, not after it.
    with pytest.raises(WindowError, match="window_days must be at least 1, got 0"):
        resolve_window(CHURN, date(2026, 11, 21), window_days=0)
    assert resolve_window(CHURN, date(2026, 11, 21), date(2026, 11, 21), 1).end == date(
        2026, 11, 21
    )
    with pytest.raises(WindowError, match="window_end 2026-11-22 is after the run day 2026-11-21"):
        resolve_window(CHURN, date(2026, 11, 21), date(2026, 11, 22), 1)


def test_snapshot_is_content_addressed_and_idempotent(settings) -> None:
    spec = _unit_spec("unit_ingest")
    land_days(settings, START, START + timedelta(days=4), 300, prefix="unit_ingest")
    window = TrainingWindow(start=START, end=START + timedelta(days=4))

    first = ingest(spec, settings, window)
    second = ingest(spec, settings, window)

    assert first == second
    assert first.rows == 1500 and first.sources == 5
    body = storage.get_bytes(settings, first.uri)
    assert hashlib.sha256(body).hexdigest() == first.sha256
    assert (
        first.uri
        == f"s3://{settings.artifacts_bucket}/snapshots/unit_ingest/{first.sha256}.parquet"
    )
    frame = load_snapshot(settings, first.uri, first.sha256)
    expected = pd.concat([generate_day(START + timedelta(days=i), 300) for i in range(5)])
    assert frame["customer_id"].tolist() == expected["customer_id"].tolist()

    # Different data in the window means a different snapshot; the old one is kept.
    land_days(settings, START, START, 300, Knobs(concept_drift=0.5), prefix="unit_ingest")
    changed = ingest(spec, settings, window)
    assert changed.sha256 != first.sha256
    assert storage.exists(settings, first.uri)


def test_tampered_snapshot_is_detected(settings) -> None:
    spec = _unit_spec("unit_tamper")
    land_days(settings, START, START, 200, prefix="unit_tamper")
    snapshot = ingest(spec, settings, TrainingWindow(start=START, end=START))
    storage.put_bytes(settings, snapshot.uri, b"not the data")
    with pytest.raises(SnapshotUnavailableError, match="expected " + snapshot.sha256):
        load_snapshot(settings, snapshot.uri, snapshot.sha256)


def test_missing_partitions_are_listed(settings) -> None:
    spec = _unit_spec("unit_missing")
    land_days(settings, START, START, 100, prefix="unit_missing")
    land_days(
        settings, START + timedelta(days=2), START + timedelta(days=2), 100, prefix="unit_missing"
    )
    window = TrainingWindow(start=START, end=START + timedelta(days=3))
    with pytest.raises(MissingPartitionsError) as error:
        ingest(spec, settings, window)
    assert error.value.missing == ["2025-03-02", "2025-03-04"]
    assert "2025-03-02, 2025-03-04" in str(error.value)


def test_warning_expectations_do_not_fail_but_critical_ones_do(settings) -> None:
    suite, _ = load_suite_json(settings, "churn")
    frame = generate_day(START, 1000)
    # Duplicate ids break only a warning-severity expectation.
    frame.loc[:9, "customer_id"] = "C-duplicate"
    _, failures, warnings = run_suite(frame, suite)
    assert failures == []
    assert [(w.column, w.expectation) for w in warnings] == [
        ("customer_id", "expect_column_values_to_be_unique")
    ]
    assert warnings[0].severity == "warning"

    broken = generate_day(START, 1000, Knobs(corruption=("bad_category", "missing_column")))
    _, failures, _ = run_suite(broken, suite)
    failed = {(f.column, f.expectation) for f in failures}
    assert ("contract", "expect_column_values_to_be_in_set") in failed
    assert ("support_calls", "expect_column_values_to_not_be_null") in failed
    assert (None, "expect_table_columns_to_match_set") in failed
    bad_category = next(f for f in failures if f.column == "contract")
    assert bad_category.sample[0] == "weekly"
    assert "contract: expect_column_values_to_be_in_set" in bad_category.describe()


def test_validation_results_and_data_docs_are_stored_once(settings) -> None:
    spec = _unit_spec("unit_validate")
    land_days(
        settings, START, START, 500, Knobs(corruption=("out_of_range",)), prefix="unit_validate"
    )
    snapshot = ingest(spec, settings, TrainingWindow(start=START, end=START))

    report = validate_snapshot(spec, settings, snapshot)

    assert not report.success
    assert report.evaluated == len(load_suite_json(settings, "churn")[0]["expectations"])
    assert storage.exists(settings, report.result_uri)
    assert report.data_docs_uri and report.data_docs_uri.endswith(".html")
    page = storage.get_bytes(settings, report.data_docs_uri).decode()
    assert "tenure_months" in page
    message = report.failure_message()
    assert "tenure_months: expect_column_values_to_be_between" in message
    assert report.result_uri in message

    report_key = report.result_uri.replace("result.json", "report.json")
    before = storage.client(settings).head_object(
        Bucket=settings.artifacts_bucket, Key=report_key.split("/", 3)[3]
    )["LastModified"]
    assert validate_snapshot(spec, settings, snapshot) == report
    after = storage.client(settings).head_object(
        Bucket=settings.artifacts_bucket, Key=report_key.split("/", 3)[3]
    )["LastModified"]
    assert before == after


def test_missing_suite_is_a_clear_error(settings, tmp_path: Path) -> None:
    from dataclasses import replace

    from trainyard.data.validation import SuiteError

    with pytest.raises(SuiteError, match="nope"):
        load_suite_json(replace(settings, expectations_dir=tmp_path), "nope")
