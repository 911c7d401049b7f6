"""Prediction and target drift of the performance monitor: Evidently 0.7 run in-process on
frames built here (no storage, no MLflow), and the holdout scores training keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support import REPO
from trainyard.core.spec import parse_spec
from trainyard.monitoring.report import (
    REPORT_SAMPLE_ROWS,
    quality_of,
    report_frames,
    run_report,
    score_column,
)

SHIPPED = REPO / "include" / "pipelines"


def _churn():
    return parse_spec(yaml.safe_load((SHIPPED / "churn.yaml").read_text()), Path("churn.yaml"))


def _regression():
    data = yaml.safe_load((SHIPPED / "churn.yaml").read_text())
    data["model"] = {"task": "regression", "estimator": "sklearn.linear_model.Ridge"}
    data.update(metrics=["r2"], gate={"champion_metric": "r2"})
    data["performance"]["metric"] = "r2"
    return parse_spec(data, Path("churn.yaml"))


def _binary(rows: int, seed: int, score_shift: float = 0.0, positives: float = 0.5):
    """Labels and a classifier's scores: ``score_shift`` moves the scores, ``positives`` the
    label distribution."""
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < positives).astype("int64")
    proba = np.clip(0.25 + 0.5 * label + rng.normal(score_shift, 0.15, rows), 0, 1)
    return pd.DataFrame(
        {
            "label": label,
            "prediction": (proba >= 0.5).astype("int64"),
            "proba_0": 1 - proba,
            "proba_1": proba,
        }
    )


def test_the_score_of_a_binary_classifier_is_its_positive_class_probability() -> None:
    spec = _churn()
    assert score_column(spec, ["label", "prediction", "proba_0", "proba_1"]) == "proba_1"
    assert score_column(spec, ["label", "prediction", "proba_a", "proba_b", "proba_c"]) == (
        "prediction"
    )
    assert score_column(spec, ["label", "prediction"]) == "prediction"


def test_report_frames_share_one_class_type_and_are_capped() -> None:
    spec = _churn()
    holdout = _binary(REPORT_SAMPLE_ROWS + 10, seed=1)
    window = _binary(50, seed=2).astype({"label": str})  # labels landed as text
    reference, current, score = report_frames(spec, holdout, window.assign(row_id="x"))
    assert score == "proba_1"
    assert len(reference) == REPORT_SAMPLE_ROWS and len(current) == 50
    assert list(current.columns) == ["label", "prediction", "proba_1"]
    assert current["label"].dtype == reference["label"].dtype == np.dtype("int64")


def test_shifted_scores_are_prediction_drift_and_unchanged_labels_are_not_target_drift() -> None:
    shift, snapshot = run_report(_churn(), _binary(2000, 1), _binary(600, 2, score_shift=0.25))
    assert shift.score_column == "proba_1"
    assert shift.prediction.drifted and shift.prediction.column == "proba_1"
    assert not shift.target.drifted
    assert shift.current_rows == 600 and shift.reference_rows == 2000
    assert 0 < shift.quality["accuracy"] <= 1 and "rocauc" in shift.quality
    metrics = shift.metrics()
    assert metrics["prediction_drift"] == 1.0 and metrics["target_drift"] == 0.0
    assert metrics["evidently_accuracy"] == shift.quality["accuracy"]
    assert "prediction drift (proba_1): DRIFT" in shift.describe()
    assert snapshot is not None


def test_a_changed_label_distribution_is_target_drift() -> None:
    shift, _ = run_report(_churn(), _binary(2000, 1), _binary(600, 2, positives=0.9))
    assert shift.target.drifted and shift.target.column == "label"


def test_a_stable_window_drifts_in_neither() -> None:
    shift, _ = run_report(_churn(), _binary(2000, 1), _binary(600, 2))
    assert not shift.prediction.drifted and not shift.target.drifted


def test_a_multiclass_classifier_drifts_on_its_predicted_class() -> None:
    rng = np.random.default_rng(3)

    def frame(rows: int, weights: list[float]) -> pd.DataFrame:
        label = rng.choice(["a", "b", "c"], size=rows, p=weights)
        return pd.DataFrame({"label": label, "prediction": label})

    shift, _ = run_report(_churn(), frame(1500, [0.4, 0.3, 0.3]), frame(500, [0.1, 0.1, 0.8]))
    assert shift.score_column == "prediction"
    assert shift.prediction.drifted and shift.target.drifted
    assert shift.quality["accuracy"] == pytest.approx(1.0)


def test_a_regressor_drifts_on_its_predicted_values_with_regression_quality() -> None:
    spec = _regression()
    rng = np.random.default_rng(4)

    def frame(rows: int, shift: float) -> pd.DataFrame:
        label = rng.normal(150 + shift, 40, rows)
        return pd.DataFrame({"label": label, "prediction": label + rng.normal(0, 10, rows)})

    shift, _ = run_report(spec, frame(1500, 0), frame(500, 60))
    assert shift.score_column == "prediction"
    assert shift.prediction.drifted and shift.target.drifted
    assert {"rmse", "mae", "r2score"} <= set(shift.quality)


def test_quality_keeps_single_numbers_and_the_mean_of_mean_std_values() -> None:
    report = {
        "metrics": [
            {"config": {"type": "evidently:metric_v2:Accuracy"}, "value": 0.9},
            {"config": {"type": "evidently:metric_v2:MAE"}, "value": {"mean": 3.0, "std": 1.0}},
            {"config": {"type": "evidently:metric_v2:F1ByLabel"}, "value": {0: 0.5}},
            {"config": {"type": "evidently:metric_v2:RocAuc"}, "value": float("nan")},
        ]
    }
    assert quality_of(report) == {"accuracy": 0.9, "mae": 3.0}


def test_no_report_without_a_verdict_or_without_the_champions_holdout_scores() -> None:
    """Both are decided before any storage is read (settings=None would fail if it were)."""
    from datetime import date

    from trainyard.monitoring.steps import Baseline, WindowResult, prediction_target_drift

    day = date(2026, 3, 2)
    counts = {"predictions": 10, "other_versions": 0, "labels": 10, "matched": 10}
    window = WindowResult(start=day, end=day, status="ok", metrics={}, unmatched_labels=0, **counts)
    joined = pd.DataFrame()
    old = Baseline(model_name="churn", version="3", metrics={"accuracy": 0.8})  # no run id

    few = window.model_copy(update={"status": "insufficient_labels"})
    assert prediction_target_drift(_churn(), None, old, few, joined) == (
        None,
        "no prediction/target drift report: insufficient labels in the newest window",
        None,
    )
    shift, note, snapshot = prediction_target_drift(_churn(), None, old, window, joined)
    assert shift is None and snapshot is None
    assert note == (
        "no prediction/target drift report: churn v3 has no holdout scores (trained before "
        "trainyard kept them; a retrain keeps them)"
    )
