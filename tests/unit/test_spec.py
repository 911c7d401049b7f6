"""Pipeline spec parsing and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from trainyard.core.spec import SpecError, load_all_specs, load_spec, parse_spec

SHIPPED = REPO / "include" / "pipelines"


def _churn() -> dict:
    return yaml.safe_load((SHIPPED / "churn.yaml").read_text())


def test_shipped_specs_load_with_their_defaults() -> None:
    specs = {spec.name: spec for spec in load_all_specs(SHIPPED)}
    assert set(specs) == {"churn", "breast_cancer"}
    churn = specs["churn"]
    assert churn.training_dag_id == "train_churn"
    assert churn.registered_model_name == "churn"
    assert churn.schema_.features[:2] == ("tenure_months", "monthly_charges")
    assert specs["breast_cancer"].window.days == 28  # default, ignored by a static source
    assert specs["breast_cancer"].registered_model_name == "breast_cancer"


def test_spec_hash_ignores_formatting_and_key_order(tmp_path: Path) -> None:
    data = _churn()
    reordered = dict(reversed(list(data.items())))
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(reordered, default_flow_style=True))
    assert load_spec(path).sha256() == load_spec(SHIPPED / "churn.yaml").sha256()

    data["split"]["seed"] = 43
    assert parse_spec(data, Path("churn.yaml")).sha256() != load_spec(path).sha256()


def test_specs_are_frozen() -> None:
    spec = load_spec(SHIPPED / "churn.yaml")
    with pytest.raises(Exception, match="frozen"):
        spec.name = "other"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(name="Churn!"), "field 'name'"),
        (lambda d: d["model"].update(estimator="not a path"), "field 'model.estimator'"),
        (lambda d: d.update(metrics=["roc_auc", "r2"]), "not classification metrics"),
        (lambda d: d["gate"]["floors"].update(precision=0.5), "gate uses metric 'precision'"),
        (lambda d: d["schema"].update(target="tenure_months"), "also listed as a feature"),
        (lambda d: d["drift"].update(columns=["no_such_column"]), "not features"),
        (lambda d: d["source"].update(on_missing_partitions="later"), "on_missing_partitions"),
        (lambda d: d["window"].update(days=0), "field 'window.days'"),
        (lambda d: d.update(extra_key=1), "field 'extra_key'"),
        (lambda d: d["drift"].update(method="kolmogorov"), "unknown drift method 'kolmogorov'"),
        (
            lambda d: d["drift"].update(per_column_method={"region": "wassertein"}),
            "column 'region': unknown drift method 'wassertein'",
        ),
        (
            lambda d: d["drift"].update(per_column_method={"contract": "ks"}),
            "drift method 'ks' cannot test categorical column 'contract'",
        ),
        (lambda d: d["drift"].update(method="chisquare"), "cannot test numeric column"),
    ],
)
def test_invalid_specs_name_the_field(mutate, expected: str) -> None:
    data = _churn()
    mutate(data)
    with pytest.raises(SpecError, match="churn.yaml") as error:
        parse_spec(data, Path("pipelines/churn.yaml"))
    assert expected in str(error.value)


def test_name_must_match_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text((SHIPPED / "churn.yaml").read_text())
    with pytest.raises(SpecError, match="must match the file name 'other'"):
        load_spec(path)


def test_yaml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=f"{path} is not valid YAML"):
        load_spec(path)


def test_load_all_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "b.yaml").write_text("- not a mapping\n")
    with pytest.raises(SpecError) as error:
        load_all_specs(tmp_path)
    assert "a.yaml" in str(error.value) and "b.yaml" in str(error.value)


def test_missing_pipelines_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_all_specs(tmp_path / "nope")


def test_leak_bounds_default_from_the_metric_table_and_can_be_replaced() -> None:
    data = _churn()
    spec = parse_spec(data, Path("churn.yaml"))
    assert spec.leak_bounds == {"roc_auc": 0.999, "accuracy": 0.999, "f1": 0.999, "log_loss": 0.001}
    data["gate"]["leak_ceilings"] = {"roc_auc": 0.9999}
    assert parse_spec(data, Path("churn.yaml")).leak_bounds == {"roc_auc": 0.9999}
    data["gate"]["leak_ceilings"] = {}
    assert parse_spec(data, Path("churn.yaml")).leak_bounds == {}
    data["gate"]["leak_ceilings"] = {"r2": 0.99}
    with pytest.raises(SpecError, match="gate uses metric 'r2'"):
        parse_spec(data, Path("churn.yaml"))


def test_regression_leak_bounds_include_r2_and_exact_zero_errors() -> None:
    data = yaml.safe_load((SHIPPED / "breast_cancer.yaml").read_text())
    data["model"] = {"task": "regression", "estimator": "sklearn.linear_model.Ridge"}
    data.update(metrics=["r2", "rmse", "mae"], gate={"champion_metric": "r2"})
    spec = parse_spec(data, Path("breast_cancer.yaml"))
    assert spec.leak_bounds == {"r2": 0.999, "rmse": 0.0, "mae": 0.0}


def test_two_specs_may_not_share_a_registered_model(tmp_path: Path) -> None:
    for name in ("first", "second"):
        data = _churn()
        data["name"] = name
        data["model"]["registered_name"] = "shared"
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    data = _churn()  # registered_name churn: no conflict
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as error:
        load_all_specs(tmp_path)
    assert str(error.value) == (
        f"invalid pipeline specs {tmp_path / 'first.yaml'} and {tmp_path / 'second.yaml'}: "
        "field 'model.registered_name': both register model 'shared'; each pipeline needs its "
        "own (one would replace the other's champion)"
    )


def test_default_registered_name_counts_too(tmp_path: Path) -> None:
    """A spec named ``churn`` registers ``churn`` by default; another may not claim it."""
    (tmp_path / "churn.yaml").write_text(
        (SHIPPED / "churn.yaml").read_text().replace("  registered_name: churn\n", "")
    )
    data = _churn()
    data["name"] = "other"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="both register model 'churn'"):
        load_all_specs(tmp_path)
