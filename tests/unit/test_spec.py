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
