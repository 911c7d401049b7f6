"""Preflight: the spec's model is built, fitted on a synthetic frame and saved with skops."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from trainyard.core.spec import SpecError, parse_spec
from trainyard.training.preflight import (
    SKLEARN_TRUSTED_TYPES,
    UntrustedModelTypesError,
    preflight,
    synthetic_frame,
    trusted_types,
)

SHIPPED = REPO / "include" / "pipelines"
PATH = Path("pipelines/x.yaml")


def _spec(**model):
    data = yaml.safe_load((SHIPPED / "breast_cancer.yaml").read_text())
    data["name"] = "x"
    data["model"] = {"task": "classification", **model}
    if data["model"]["task"] == "regression":
        data.update(metrics=["r2"], gate={"champion_metric": "r2"})
    return parse_spec(data, PATH)


@pytest.mark.parametrize("name", ["churn", "breast_cancer"])
def test_shipped_specs_pass_preflight(name: str) -> None:
    preflight(parse_spec(yaml.safe_load((SHIPPED / f"{name}.yaml").read_text()), Path(name)))


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
    ],
)
def test_sklearn_tree_internals_are_trusted_without_listing_them(estimator: str) -> None:
    preflight(_spec(estimator=estimator, params={"random_state": 0}), PATH)


def test_an_unreviewed_type_fails_naming_it_until_listed() -> None:
    knn = "sklearn.neighbors.KNeighborsClassifier"
    with pytest.raises(UntrustedModelTypesError) as error:
        preflight(_spec(estimator=knn), PATH)
    message = str(error.value)
    assert message.startswith(
        f"invalid pipeline spec {PATH}: field 'model.skops_trusted_types': the fitted {knn} "
        "contains types skops does not trust by default: "
        "['sklearn.metrics._dist_metrics.EuclideanDistance64', 'sklearn.neighbors._kd_tree.KDTree']"
    )
    listed = [
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.neighbors._kd_tree.KDTree",
    ]
    preflight(_spec(estimator=knn, skops_trusted_types=listed), PATH)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"max_deth": 3}},
            "field 'model.params.max_deth': sklearn.ensemble.RandomForestClassifier does not "
            "accept it: RandomForestClassifier.__init__() got an unexpected keyword argument "
            "'max_deth'",
        ),
        (
            {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": -1}},
            "field 'model.params.C': The 'C' parameter of LogisticRegression must be a float in "
            "the range (0.0, inf]. Got -1 instead.",
        ),
        (
            {"estimator": "sklearn.linear_model.Ridge"},
            "field 'model.task': sklearn.linear_model.Ridge is a regressor, but model.task is "
            "classification",
        ),
        (
            {"estimator": "sklearn.cluster.KMeans"},
            "field 'model.task': sklearn.cluster.KMeans is neither a classifier nor a regressor",
        ),
        (
            {"task": "regression", "estimator": "sklearn.linear_model.LogisticRegression"},
            "field 'model.task': sklearn.linear_model.LogisticRegression is a classifier, but "
            "model.task is regression",
        ),
        (
            {"estimator": "sklearn.linear_model.Nope"},
            "field 'model.estimator': model.estimator 'sklearn.linear_model.Nope' cannot be "
            "imported",
        ),
    ],
    ids=["misspelt-param", "invalid-value", "regressor", "clusterer", "classifier", "no-class"],
)
def test_preflight_names_the_spec_file_and_field(model: dict, expected: str) -> None:
    with pytest.raises(SpecError) as error:
        preflight(_spec(**model), PATH)
    assert str(error.value).startswith(f"invalid pipeline spec {PATH}: {expected}")
    assert "\n" not in str(error.value)


def test_synthetic_frame_has_the_schema_and_a_fitting_target() -> None:
    spec = _spec(estimator="sklearn.linear_model.LogisticRegression")
    frame = synthetic_frame(spec)
    assert list(frame.columns) == [*spec.schema_.features, spec.schema_.target]
    assert frame[spec.schema_.target].nunique() == 2
    assert frame[list(spec.schema_.features)].isna().any().all()  # imputers are exercised


def test_trusted_types_returns_what_the_model_holds() -> None:
    from sklearn.ensemble import RandomForestClassifier

    spec = _spec(estimator="sklearn.ensemble.RandomForestClassifier")
    model = RandomForestClassifier(n_estimators=2).fit([[0], [1]], [0, 1])
    assert trusted_types(spec, model) == ["sklearn.tree._tree.Tree"]
    assert "sklearn.tree._tree.Tree" in SKLEARN_TRUSTED_TYPES
