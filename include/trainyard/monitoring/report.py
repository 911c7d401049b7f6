"""Prediction drift and target drift of the champion, with Evidently 0.7's quality presets.

The performance monitor compares the newest window's labelled predictions with the champion's
own predictions on its holdout (kept at training under
:func:`trainyard.data.predictions.holdout_scores_uri`):

- **prediction drift**: the distribution of its scores (the positive class's probability for a
  binary classifier, the predicted class for other classifiers, the predicted value for a
  regressor) against the holdout's;
- **target drift**: the distribution of the labels against the holdout's labels;
- Evidently's ``ClassificationPreset`` / ``RegressionPreset`` on the window (accuracy, F1, ROC
  AUC…, or RMSE, MAE…), in the same HTML report.

Both drifts are reported, never acted on: what retrains is realised decay (and data drift, in
the drift monitor). The per-column tests are Evidently's defaults, read through the drift
check's own :func:`trainyard.drift.evidently.parse_snapshot`. Both sides are sampled to at most
:data:`REPORT_SAMPLE_ROWS` rows, so the report's memory is bounded whatever the window's size.
Everything here but :func:`run_report` is pure; Evidently is imported only there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from trainyard.drift.evidently import ColumnDrift

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.spec import PipelineSpec

#: Rows per side compared by Evidently (a seeded sample of larger windows and holdouts).
REPORT_SAMPLE_ROWS = 50_000
REPORT_SAMPLE_SEED = 0
#: Evidently quality metrics copied into the summary and MLflow (single numbers only).
_QUALITY_METRICS = frozenset(
    {
        "Accuracy",
        "Precision",
        "Recall",
        "F1Score",
        "RocAuc",
        "LogLoss",
        "RMSE",
        "MAE",
        "MeanError",
        "MAPE",
        "R2Score",
        "AbsMaxError",
    }
)


class ShiftSummary(BaseModel):
    """Prediction and target drift of one window against the champion's holdout."""

    model_config = ConfigDict(frozen=True)

    score_column: str
    prediction: ColumnDrift
    target: ColumnDrift
    quality: dict[str, float]
    reference_rows: int
    current_rows: int

    def describe(self) -> str:
        """Two lines: each drift with its test, score and threshold."""
        return "\n".join(
            f"  {what} drift ({drift.column}): "
            f"{'DRIFT' if drift.drifted else 'no drift'}, {drift.method} {drift.score:.4f} "
            f"(threshold {drift.threshold:g}); {self.current_rows} labelled vs "
            f"{self.reference_rows} holdout rows"
            for what, drift in (("prediction", self.prediction), ("target", self.target))
        )

    def metrics(self) -> dict[str, float]:
        """The MLflow metrics of the report."""
        return {
            "prediction_drift_score": self.prediction.score,
            "prediction_drift": float(self.prediction.drifted),
            "target_drift_score": self.target.score,
            "target_drift": float(self.target.drifted),
            **{f"evidently_{name}": value for name, value in self.quality.items()},
        }


def score_column(spec: PipelineSpec, columns: list[str]) -> str:
    """The column whose distribution stands for the model's scores (pure).

    Args:
        spec: Its task.
        columns: The columns the holdout scores and the prediction log share.

    Returns:
        The last ``proba_<class>`` column for a binary classifier (the positive class, in the
        model's sorted class order), else ``prediction``.
    """
    from trainyard.data.predictions import PROBA_PREFIX

    proba = [c for c in columns if c.startswith(PROBA_PREFIX)]
    if spec.model.task == "classification" and len(proba) == 2:
        return proba[-1]
    return "prediction"


def report_frames(
    spec: PipelineSpec, holdout: pd.DataFrame, joined: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The reference and current rows Evidently compares, in one form and sampled (pure).

    Args:
        spec: Its task.
        holdout: The champion's holdout scores (``label``, ``prediction``, ``proba_*``).
        joined: The window's predictions joined with their labels.

    Returns:
        Reference, current (``label``, ``prediction`` and the score column; classes as one type
        on both sides) and the score column's name.
    """
    import pandas as pd

    from trainyard.drift.evidently import sample_rows
    from trainyard.monitoring.steps import as_classes

    shared = [c for c in holdout.columns if c in joined.columns]
    score = score_column(spec, shared)
    columns = list(dict.fromkeys(["label", "prediction", score]))
    frames = []
    for frame in (holdout, joined):
        rows = sample_rows(frame[columns], REPORT_SAMPLE_ROWS, REPORT_SAMPLE_SEED)
        if spec.model.task == "classification":
            rows = rows.assign(
                label=as_classes(rows["label"]), prediction=as_classes(rows["prediction"])
            )
        else:
            rows = rows.astype({"label": "float64", "prediction": "float64"})
        if score != "prediction":
            rows = rows.astype({score: "float64"})
        frames.append(pd.DataFrame(rows).reset_index(drop=True))
    return frames[0], frames[1], score


def quality_of(report: dict[str, Any]) -> dict[str, float]:
    """Evidently's single-number quality metrics of the window (``snapshot.dict()``), pure.

    Metrics whose value is a table (per label) are left out; a mean/std value keeps its mean.
    """
    quality = {}
    for metric in report.get("metrics") or []:
        kind = str((metric.get("config") or {}).get("type", "")).rsplit(":", 1)[-1]
        if kind not in _QUALITY_METRICS:
            continue
        value = metric.get("value")
        if isinstance(value, dict):
            value = value.get("mean")
        if isinstance(value, int | float) and math.isfinite(value):
            quality[kind.lower()] = float(value)
    return quality


def parse_report(
    report: dict[str, Any], score: str, reference_rows: int, current_rows: int
) -> ShiftSummary:
    """The prediction and target drift and the quality metrics out of ``snapshot.dict()`` (pure).

    Raises:
        trainyard.drift.evidently.UnreadableReportError: A drift test is missing or failed.
    """
    from trainyard.drift.evidently import UnreadableReportError, parse_snapshot

    # drift_share only sets a dataset verdict, which this report does not use.
    columns = {c.column: c for c in parse_snapshot(report, drift_share=1.0).columns}
    if score not in columns or "label" not in columns:
        raise UnreadableReportError(
            f"the report lacks the drift of {score!r} or of the labels: {sorted(columns)}"
        )
    return ShiftSummary(
        score_column=score,
        prediction=columns[score],
        target=columns["label"],
        quality=quality_of(report),
        reference_rows=reference_rows,
        current_rows=current_rows,
    )


def run_report(
    spec: PipelineSpec, holdout: pd.DataFrame, joined: pd.DataFrame
) -> tuple[ShiftSummary, Any]:
    """Run Evidently's drift and classification (or regression) presets on the window.

    Args:
        spec: Its task.
        holdout: The champion's holdout scores.
        joined: The window's labelled predictions.

    Returns:
        The parsed summary and Evidently's snapshot (for ``save_html``).
    """
    from evidently import (
        BinaryClassification,
        DataDefinition,
        Dataset,
        MulticlassClassification,
        Regression,
        Report,
    )
    from evidently.presets import ClassificationPreset, DataDriftPreset, RegressionPreset

    reference, current, score = report_frames(spec, holdout, joined)
    drifted = list(dict.fromkeys([score, "label"]))
    if spec.model.task == "classification":
        classes = set(reference["label"]) | set(current["label"]) | set(reference["prediction"])
        categorical = ["label", "prediction"]
        numerical = [] if score == "prediction" else [score]
        if score != "prediction":
            from trainyard.data.predictions import PROBA_PREFIX
            from trainyard.monitoring.steps import as_classes

            positive = as_classes([score[len(PROBA_PREFIX) :]])[0]
            task = BinaryClassification(
                target="label",
                prediction_labels="prediction",
                prediction_probas=score,
                pos_label=positive,
            )
        elif len(classes) == 2:
            task = BinaryClassification(target="label", prediction_labels="prediction")
        else:
            task = MulticlassClassification(target="label", prediction_labels="prediction")
        definition = DataDefinition(
            numerical_columns=numerical, categorical_columns=categorical, classification=[task]
        )
        quality = ClassificationPreset()
    else:
        definition = DataDefinition(
            numerical_columns=["label", "prediction"],
            regression=[Regression(target="label", prediction="prediction")],
        )
        quality = RegressionPreset()
    report = Report([DataDriftPreset(columns=drifted), quality], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    return parse_report(snapshot.dict(), score, len(reference), len(current)), snapshot
