"""Model construction, split and metrics: code, data and model behaviour."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support import REPO
from trainyard.core.metrics import compute_metrics
from trainyard.core.spec import load_spec, parse_spec
from trainyard.data.sources import read_sklearn_dataset
from trainyard.training import modeling
from trainyard_dev.churn import generate_day

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")


@pytest.fixture(scope="module")
def churn_frame() -> pd.DataFrame:
    return pd.concat([generate_day(date(2026, 3, d), 800) for d in range(1, 11)], ignore_index=True)


def test_split_is_stable_balanced_and_numeric_is_float(churn_frame: pd.DataFrame) -> None:
    first = modeling.split(CHURN, churn_frame)
    second = modeling.split(CHURN, churn_frame.sample(frac=1, random_state=3))
    assert set(first.x_test.index) == set(second.x_test.index)
    assert len(first.x_test) == pytest.approx(0.2 * len(churn_frame), rel=0.1)
    assert first.y_test.mean() == pytest.approx(first.y_train.mean(), abs=0.03)
    assert all(first.x_train[c].dtype == "float64" for c in CHURN.schema_.numeric_features)
    other_seed = CHURN.model_copy(update={"split": CHURN.split.model_copy(update={"seed": 7})})
    assert set(modeling.split(other_seed, churn_frame).x_test.index) != set(first.x_test.index)


def test_overlapping_windows_never_train_on_each_others_holdout() -> None:
    """The champion (yesterday's window) has never trained on a row of today's holdout."""
    days = [generate_day(date(2026, 3, d), 500) for d in range(1, 12)]
    yesterday = pd.concat(days[:10], ignore_index=True)
    today = pd.concat(days[1:], ignore_index=True)
    ids = yesterday["customer_id"]
    champion_trained_on = set(ids[modeling.split(CHURN, yesterday).x_train.index])
    todays_holdout = set(today["customer_id"][modeling.split(CHURN, today).x_test.index])
    assert todays_holdout and not champion_trained_on & todays_holdout


def test_rows_without_an_id_are_split_by_content() -> None:
    spec = load_spec(REPO / "include" / "pipelines" / "breast_cancer.yaml")
    frame = read_sklearn_dataset("breast_cancer")
    first = modeling.split(spec, frame)
    shuffled = modeling.split(spec, frame.sample(frac=1, random_state=1).reset_index(drop=True))
    key = list(spec.schema_.features)
    assert sorted(map(tuple, first.x_test[key].to_numpy())) == sorted(
        map(tuple, shuffled.x_test[key].to_numpy())
    )


def test_too_few_rows_is_a_clear_error(churn_frame: pd.DataFrame) -> None:
    with pytest.raises(modeling.TrainingDataError, match="too few|single class"):
        modeling.split(CHURN, churn_frame.head(2))


def test_unlabelled_rows_are_dropped_and_counted(churn_frame: pd.DataFrame) -> None:
    frame = churn_frame.copy()
    frame.loc[:99, "churned"] = pd.NA
    data = modeling.split(CHURN, frame)
    assert data.dropped_unlabeled == 100
    assert len(data.x_train) + len(data.x_test) == len(frame) - 100


def test_missing_declared_column_is_named(churn_frame: pd.DataFrame) -> None:
    with pytest.raises(modeling.TrainingDataError, match=r"\['support_calls'\]"):
        modeling.split(CHURN, churn_frame.drop(columns=["support_calls"]))


def test_pipeline_learns_churn_and_tolerates_unknown_categories_and_nulls(
    churn_frame: pd.DataFrame,
) -> None:
    data = modeling.split(CHURN, churn_frame)
    model = modeling.build_pipeline(CHURN).fit(data.x_train, data.y_train)
    metrics = compute_metrics(CHURN.metrics, model, data.x_test, data.y_test)
    assert metrics["roc_auc"] > 0.75
    assert 0 < metrics["log_loss"] < 0.6

    odd = data.x_test.head(20).copy()
    odd["contract"] = "weekly"
    odd.loc[odd.index[:5], "monthly_charges"] = np.nan
    assert np.isfinite(model.predict_proba(odd)).all()


def test_model_ranks_risky_customers_higher(churn_frame: pd.DataFrame) -> None:
    """Behaviour: more support calls and month-to-month contracts mean more churn."""
    data = modeling.split(CHURN, churn_frame)
    model = modeling.build_pipeline(CHURN).fit(data.x_train, data.y_train)
    base = data.x_test.head(200).copy()
    calm = base.assign(support_calls=0.0, contract="two_year")
    risky = base.assign(support_calls=6.0, contract="month_to_month")
    assert model.predict_proba(risky)[:, 1].mean() > model.predict_proba(calm)[:, 1].mean() + 0.2


def test_multiclass_metrics(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    data.update(name="wine", source={"kind": "sklearn_dataset", "dataset": "wine"})
    data["schema"] = {
        "numeric_features": ["alcohol", "malic_acid", "flavanoids"],
        "target": "target",
    }
    data["metrics"] = ["roc_auc", "f1", "accuracy"]
    data["gate"] = {"champion_metric": "roc_auc"}
    spec = parse_spec(data, tmp_path / "wine.yaml")
    split = modeling.split(spec, read_sklearn_dataset("wine"))
    model = modeling.build_pipeline(spec).fit(split.x_train, split.y_train)
    metrics = compute_metrics(spec.metrics, model, split.x_test, split.y_test)
    assert metrics["roc_auc"] > 0.9 and metrics["f1"] > 0.8


def test_unknown_estimator_is_a_clear_error() -> None:
    with pytest.raises(modeling.EstimatorImportError, match="sklearn.linear_model.Nope"):
        modeling.resolve_estimator("sklearn.linear_model.Nope")
    with pytest.raises(modeling.EstimatorImportError, match="no fit method"):
        modeling.resolve_estimator("sklearn.metrics.roc_auc_score")
