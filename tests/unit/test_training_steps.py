"""The pure parts of the training steps: fit, score, params, lineage tags, outcome (no services)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import REPO
from trainyard.core.lineage import RunContext, training_fingerprint
from trainyard.core.metrics import compute_metrics
from trainyard.core.spec import load_spec, parse_spec
from trainyard.data.snapshots import SnapshotRef
from trainyard.data.validation import ValidationReport
from trainyard.training import modeling, steps
from trainyard.training.gate import decide
from trainyard.training.outcome import outcome
from trainyard.training.registry import Registration, lineage_tags
from trainyard_dev.churn import generate_day

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
SNAPSHOT = SnapshotRef(
    uri="s3://trainyard/snapshots/churn/abc.parquet",
    sha256="abc" * 21 + "d",
    rows=8000,
    window_start=date(2026, 3, 1),
    window_end=date(2026, 3, 10),
    sources=10,
)
REPORT = ValidationReport(
    success=True,
    suite="churn",
    suite_sha256="f" * 64,
    snapshot_sha256=SNAPSHOT.sha256,
    evaluated=12,
    failures=[],
    warnings=[],
    result_uri="s3://trainyard/validation/churn/x/result.json",
    data_docs_uri="s3://trainyard/validation/churn/x/data_docs/index.html",
)
CONTEXT = RunContext(
    dag_id="train_churn", run_id="manual__1", trigger_reason="test", git_commit="c0ffee"
)
TRAINED = steps.TrainingResult(
    mlflow_run_id="run1",
    experiment_id="1",
    model_uri="models:/m-1",
    rows_train=6400,
    rows_holdout=1600,
    dropped_unlabeled=0,
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.concat([generate_day(date(2026, 3, d), 800) for d in range(1, 11)], ignore_index=True)


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> steps.Fitted:
    return steps.fit(CHURN, frame)


def test_fit_trains_on_the_training_side_only(fitted: steps.Fitted, frame: pd.DataFrame) -> None:
    split = modeling.split(CHURN, frame)
    assert fitted.data.x_train.index.equals(split.x_train.index)
    assert not set(fitted.data.x_train.index) & set(fitted.data.x_test.index)
    assert set(fitted.model.predict(fitted.data.x_test)) <= {0, 1}


def test_score_is_the_spec_metrics_on_the_holdout(fitted: steps.Fitted) -> None:
    scores = steps.score(CHURN, fitted.model, fitted.data)
    holdout = fitted.data
    expected = compute_metrics(CHURN.metrics, fitted.model, holdout.x_test, holdout.y_test)
    assert scores == expected
    assert set(scores) == set(CHURN.metrics)
    assert scores["roc_auc"] > 0.75


def test_the_kept_holdout_scores_exactly_as_the_split_it_was_cut_from(
    fitted: steps.Fitted,
) -> None:
    import io

    import pyarrow.parquet as pq

    from trainyard.core import storage

    body = storage.parquet_bytes(steps.holdout_frame(CHURN, fitted.data))
    kept = steps.holdout_split(
        CHURN, pq.read_table(io.BytesIO(body)).to_pandas(), fitted.data.dropped_unlabeled
    )
    assert kept.x_train.empty and kept.y_train.empty
    pd.testing.assert_frame_equal(kept.x_test, fitted.data.x_test.reset_index(drop=True))
    assert kept.y_test.tolist() == fitted.data.y_test.tolist()
    assert str(kept.y_test.dtype) == str(fitted.data.y_test.dtype)
    assert steps.score(CHURN, fitted.model, kept) == steps.score(CHURN, fitted.model, fitted.data)
    # The same rows give the same bytes, hence the same content-addressed key.
    assert storage.parquet_bytes(steps.holdout_frame(CHURN, kept)) == body


def test_holdout_scores_are_the_models_own_predictions_on_its_holdout(
    fitted: steps.Fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    holdout = fitted.data
    scores = steps.holdout_scores(CHURN, fitted.model, holdout)
    assert list(scores.columns) == ["label", "prediction", "proba_0", "proba_1"]
    assert scores["label"].tolist() == holdout.y_test.tolist()
    assert scores["prediction"].tolist() == fitted.model.predict(holdout.x_test).tolist()
    expected = fitted.model.predict_proba(holdout.x_test)[:, 1]
    assert scores["proba_1"].to_numpy() == pytest.approx(expected)

    # A large holdout is kept as a seeded sample, labels still aligned with their rows.
    monkeypatch.setattr("trainyard.data.predictions.HOLDOUT_SCORES_ROWS", 100)
    sample = steps.holdout_scores(CHURN, fitted.model, holdout)
    assert len(sample) == 100
    assert sample.equals(steps.holdout_scores(CHURN, fitted.model, holdout))
    rows = holdout.x_test.sample(n=100, random_state=CHURN.split.seed)
    assert sample["label"].tolist() == holdout.y_test.loc[rows.index].tolist()


def test_split_mismatch_warns_only_when_the_settings_differ() -> None:
    same = {"split.seed": str(CHURN.split.seed), "split.test_size": str(CHURN.split.test_size)}
    assert steps.split_mismatch(CHURN, same) == ""
    message = steps.split_mismatch(CHURN, {**same, "split.seed": "7"})
    assert "'split.seed': '7'" in message and "may include rows the champion trained on" in message


def test_training_params_name_estimator_split_window_and_features() -> None:
    params = steps.training_params(CHURN, SNAPSHOT)
    assert params["estimator"] == CHURN.model.estimator
    assert params["split.seed"] == CHURN.split.seed
    assert (params["window_start"], params["window_end"]) == ("2026-03-01", "2026-03-10")
    assert params["features"].split(",") == list(CHURN.schema_.features)
    assert {f"model.{k}" for k in CHURN.model.params} <= set(params)


def test_lineage_tags_are_the_union_of_each_records_tags() -> None:
    decision = decide(CHURN.gate, {"roc_auc": 0.81234567, "log_loss": 0.4}, None)
    tags = lineage_tags(CHURN, SNAPSHOT, REPORT, TRAINED, decision, CONTEXT)

    for part in (SNAPSHOT.tags(), REPORT.tags(), CONTEXT.tags()):
        assert part.items() <= tags.items()
    # The code identity, not the commit, is the code part of the fingerprint.
    assert tags["fingerprint"] == training_fingerprint(
        SNAPSHOT.sha256, CHURN.sha256(), CONTEXT.code_sha256
    )
    assert tags["code_sha256"] == CONTEXT.code_sha256 and tags["git_commit"] == "c0ffee"
    assert tags["metric.roc_auc"] == "0.812346"
    assert tags["gate_decision"] == "passed"
    assert tags["validation_suite"] == "churn@" + "f" * 16
    assert all(isinstance(value, str) for value in tags.values())


def test_outcome_of_a_rejected_and_a_registered_run() -> None:
    rejected = decide(CHURN.gate, {"roc_auc": 0.5, "log_loss": 0.9}, None)
    record = outcome(CHURN, SNAPSHOT, TRAINED, rejected, None, "3")
    assert record.status == "rejected_by_gate" and record.champion_version == "3"
    assert "champion unchanged: v3" in record.describe()

    passed = decide(CHURN.gate, {"roc_auc": 0.9, "log_loss": 0.3}, None)
    registration = Registration(
        model_name="churn",
        version="4",
        alias="champion",
        created=True,
        previous_version="3",
        lineage={"fingerprint": "x"},
    )
    record = outcome(CHURN, SNAPSHOT, TRAINED, passed, registration, "4")
    assert (record.status, record.version, record.new_version) == ("registered", "4", True)
    assert "model churn v4 @champion (new version)" in record.describe()


def _fit_other(frame: pd.DataFrame, estimator: str, features: list[str], target) -> object:
    """A champion trained some other way: its own columns, target or estimator."""
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    numeric = [c for c in data["schema"]["numeric_features"] if c in features]
    categorical = [c for c in data["schema"]["categorical_features"] if c in features]
    data["schema"].update(numeric_features=numeric, categorical_features=categorical)
    data["model"] = {"estimator": estimator, "task": "classification"}
    if estimator.endswith("Ridge"):
        data["model"]["task"] = "regression"
        data.update(metrics=["r2"], gate={"champion_metric": "r2"})
        data["performance"]["metric"] = "r2"
    spec = parse_spec(data, Path("churn.yaml"))
    model = modeling.build_pipeline(spec)
    return model.fit(frame[[*numeric, *categorical]], target)


def test_a_compatible_champion_can_be_compared(fitted: steps.Fitted) -> None:
    assert steps.champion_incompatibility(CHURN, fitted.model, fitted.model, fitted.data) is None


def test_incompatible_champions_are_named(fitted: steps.Fitted, frame: pd.DataFrame) -> None:
    features = list(CHURN.schema_.features)
    three_classes = _fit_other(
        frame, "sklearn.linear_model.LogisticRegression", features, frame.support_calls.clip(0, 2)
    )
    assert steps.champion_incompatibility(CHURN, three_classes, fitted.model, fitted.data) == (
        "it predicts classes [0, 1, 2], the challenger [0, 1]"
    )
    wider = frame.assign(plan="basic")
    other_columns = modeling.build_pipeline(CHURN)
    other_columns.steps[0][1].transformers.append(("plan", "drop", ["plan"]))
    other_columns.fit(wider[[*features, "plan"]], frame.churned)
    assert steps.champion_incompatibility(CHURN, other_columns, fitted.model, fitted.data) == (
        "it needs columns this holdout lacks: ['plan']"
    )
    regressor = _fit_other(frame, "sklearn.linear_model.Ridge", features, frame.monthly_charges)
    assert steps.champion_incompatibility(CHURN, regressor, fitted.model, fitted.data) == (
        "it is not a classifier, this run's task is classification"
    )


def test_a_window_older_than_the_champions_is_named_and_refused_unless_asked() -> None:
    """SNAPSHOT's window ends 2026-03-10."""
    assert steps.older_window(CHURN, SNAPSHOT, "5", "2026-03-10") is None
    assert steps.older_window(CHURN, SNAPSHOT, "5", "2026-03-09") is None
    assert steps.older_window(CHURN, SNAPSHOT, "5", None) is None
    static = load_spec(REPO / "include" / "pipelines" / "breast_cancer.yaml")
    assert steps.older_window(static, SNAPSHOT, "5", "2026-04-01") is None  # no window to compare
    reason = steps.older_window(CHURN, SNAPSHOT, "5", "2026-04-01")
    assert reason == (
        "older window: this run's window ends 2026-03-10, before champion v5's (2026-04-01)"
    )

    metrics = {"roc_auc": 0.9, "log_loss": 0.3}
    refused = decide(CHURN.gate, metrics, metrics, "5", older_window=reason)
    assert not refused.passed and refused.refused_older_window
    assert f"[FAIL] {reason} (to replace it anyway, run with allow_older_window)" in (
        refused.summary()
    )
    record = outcome(CHURN, SNAPSHOT, TRAINED, refused, None, "5")
    assert record.status == "refused_older_window" and record.champion_version == "5"

    allowed = decide(
        CHURN.gate, metrics, metrics, "5", older_window=reason, allow_older_window=True
    )
    assert allowed.passed and not allowed.refused_older_window
    assert allowed.tags()["allowed_older_window"] == reason
    # Asking does not matter when the window is not older.
    assert (
        "allowed_older_window"
        not in decide(CHURN.gate, metrics, metrics, "5", allow_older_window=True).tags()
    )


def test_the_dataset_schema_is_what_mlflow_would_infer_from_every_value(
    frame: pd.DataFrame,
) -> None:
    from mlflow.types.utils import _infer_schema

    from trainyard.core.tracking import dataset_schema

    rows = frame.head(200).copy()
    rows.loc[3, "contract"] = None  # a text column with a gap: not required
    rows.loc[5, "monthly_charges"] = float("nan")
    rows["churned"] = rows["churned"].astype("Int64")
    rows["flag"] = rows["tenure_months"] > 12
    assert dataset_schema(rows).to_dict() == _infer_schema(rows).to_dict()
