"""The metric table: one source for the spec's validation and the evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from trainyard.core.metrics import METRICS, compute_metrics, greater_is_better, metrics_for


def test_every_metric_has_a_task_and_a_direction() -> None:
    assert set(metrics_for("classification")) | set(metrics_for("regression")) == set(METRICS)
    assert not set(metrics_for("classification")) & set(metrics_for("regression"))
    lower_is_better = {name for name in METRICS if not greater_is_better(name)}
    assert lower_is_better == {"log_loss", "rmse", "mae"}


def test_classification_metrics_match_scikit_learn_binary_and_multiclass() -> None:
    x, y = load_iris(return_X_y=True)
    multiclass = LogisticRegression(max_iter=500).fit(x, y)
    got = compute_metrics(metrics_for("classification"), multiclass, x, y)
    probabilities = multiclass.predict_proba(x)
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(y, probabilities, multi_class="ovr"))
    assert got["f1"] == pytest.approx(sk.f1_score(y, multiclass.predict(x), average="macro"))
    assert got["log_loss"] == pytest.approx(sk.log_loss(y, probabilities))

    binary_y = (y == 2).astype(int)
    binary = LogisticRegression(max_iter=500).fit(x, binary_y)
    got = compute_metrics(("roc_auc", "precision"), binary, x, binary_y)
    assert got["roc_auc"] == pytest.approx(
        sk.roc_auc_score(binary_y, binary.predict_proba(x)[:, 1])
    )
    assert got["precision"] == pytest.approx(sk.precision_score(binary_y, binary.predict(x)))


class _CountingPredictions:
    """A fitted model that counts how often it is asked for classes or probabilities."""

    def __init__(self, model: object) -> None:
        self.model, self.classes_, self.calls = model, model.classes_, []

    def predict(self, x: object) -> object:
        self.calls.append("predict")
        return self.model.predict(x)

    def predict_proba(self, x: object) -> object:
        self.calls.append("predict_proba")
        return self.model.predict_proba(x)


@pytest.mark.parametrize("kind", ["churn", "logistic", "forest", "multiclass"])
def test_classes_from_probabilities_equal_predict_and_the_model_runs_once(kind: str) -> None:
    from datetime import date

    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    from tests.support import REPO
    from trainyard.core.spec import load_spec
    from trainyard.training import modeling
    from trainyard_dev.churn import generate_day

    if kind == "churn":  # the shipped pipeline: preprocessing + HistGradientBoosting, strings
        spec = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
        frame = pd.concat([generate_day(date(2026, 3, d), 400) for d in range(1, 4)])
        data = modeling.split(spec, frame.reset_index(drop=True))
        x, y = data.x_test, data.y_test
        model = modeling.build_pipeline(spec).fit(data.x_train, data.y_train)
    else:
        x, y = load_iris(return_X_y=True)
        y = y if kind == "multiclass" else (y == 2).astype(int)
        if kind == "forest":
            model = RandomForestClassifier(random_state=0).fit(x, y)
        else:
            model = LogisticRegression(max_iter=500).fit(x, y)
    counting = _CountingPredictions(model)
    names = metrics_for("classification")

    got = compute_metrics(names, counting, x, y)

    assert counting.calls == ["predict_proba"]
    classes = model.classes_.take(model.predict_proba(x).argmax(axis=1))
    np.testing.assert_array_equal(classes, model.predict(x))
    assert got["accuracy"] == sk.accuracy_score(y, model.predict(x))
    average = "binary" if len(model.classes_) == 2 else "macro"
    assert got["f1"] == pytest.approx(sk.f1_score(y, model.predict(x), average=average))


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=200)
    model = LinearRegression().fit(x, y)
    got = compute_metrics(("r2", "rmse", "mae"), model, x, y)
    predictions = model.predict(x)
    assert got["r2"] == pytest.approx(sk.r2_score(y, predictions))
    assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, predictions)))
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, predictions))
