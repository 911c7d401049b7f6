"""The prediction log's layout, shared by batch scoring, the online server and the monitor."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np

from trainyard.core.settings import Settings
from trainyard.data import predictions

SETTINGS = Settings(artifacts_bucket="art")


def test_keys_are_deterministic_per_pipeline_source_day_and_version() -> None:
    day = date(2026, 3, 2)
    assert predictions.batch_uri(SETTINGS, "churn", day, "3") == (
        "s3://art/predictions/churn/batch/date=2026-03-02/v3.parquet"
    )
    assert predictions.manifest_uri(SETTINGS, "churn", day) == (
        "s3://art/predictions/churn/batch/date=2026-03-02/manifest.json"
    )
    assert predictions.online_uri(SETTINGS, "churn", day, "f1") == (
        "s3://art/predictions/churn/online/date=2026-03-02/f1.parquet"
    )


def test_prediction_frame_has_the_base_columns_then_one_probability_per_class() -> None:
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    frame = predictions.prediction_frame(
        ["C1", 2],
        np.array([1, 0]),
        np.array([[0.2, 0.8], [0.9, 0.1]]),
        [0, 1],
        model_name="churn",
        model_version=4,
        run_id="scheduled__x",
        source="batch",
        scored_at=at,
    )
    assert list(frame.columns) == [*predictions.BASE_COLUMNS, "proba_0", "proba_1"]
    assert frame["row_id"].tolist() == ["C1", "2"]
    assert frame["model_version"].unique().tolist() == ["4"]
    assert frame["proba_1"].tolist() == [0.8, 0.1]
    assert (frame["scored_at"] == at).all()


def test_regression_predictions_have_no_probability_columns() -> None:
    frame = predictions.prediction_frame(
        ["a"],
        [3.5],
        None,
        None,
        model_name="m",
        model_version="1",
        run_id="r",
        source="online",
        scored_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert list(frame.columns) == list(predictions.BASE_COLUMNS)
