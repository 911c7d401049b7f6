"""End to end: the training DAG under ``dag.test()`` on SeaweedFS S3 and an MLflow server.

The cases share one registry model (``churn``) and run in file order: the first run makes the
champion, the later ones prove what does and does not move it.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

import pytest

from tests.conftest import spec_named
from tests.e2e.conftest import LINEAGE_TAGS

pytestmark = pytest.mark.e2e

WINDOW_END = date(2026, 6, 30)
CORRUPT_DAY = date(2026, 7, 15)


@pytest.fixture(scope="module")
def churn_data(settings: Any) -> None:
    """Clean daily partitions for June and early July 2026 (1,000 rows a day)."""
    from trainyard_dev.churn import land_days

    land_days(settings, date(2026, 5, 20), CORRUPT_DAY - timedelta(days=1), rows_per_day=1000)


def _versions(name: str) -> list[Any]:
    from mlflow import MlflowClient

    return MlflowClient().search_model_versions(f"name = '{name}'")


def _champion(name: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient().get_model_version_by_alias(name, "champion")


@pytest.fixture(scope="module")
def first_run(churn_data: None, run_dag) -> Any:
    return run_dag(
        "train_churn",
        {"window_end": WINDOW_END.isoformat(), "reason": "test: first training run"},
    )


def test_first_run_registers_champion_v1_with_full_lineage(first_run, settings) -> None:
    from trainyard.core import storage
    from trainyard.core.lineage import git_commit

    assert first_run.state == "success", first_run.task_states
    assert set(first_run.task_states.values()) == {"success"}
    champion = _champion("churn")
    assert champion.version == "1"
    tags = champion.tags
    assert set(tags) >= LINEAGE_TAGS, LINEAGE_TAGS - set(tags)

    snapshot = first_run.xcoms["ingest"]
    assert tags["snapshot_uri"] == snapshot["uri"]
    body = storage.get_bytes(settings, tags["snapshot_uri"])
    assert hashlib.sha256(body).hexdigest() == tags["snapshot_sha256"]
    assert tags["snapshot_uri"].endswith(f"/{tags['snapshot_sha256']}.parquet")
    assert storage.exists(settings, tags["validation_result_uri"])
    assert storage.exists(settings, tags["data_docs_uri"])
    assert tags["validation_success"] == "true"
    assert tags["airflow_dag_id"] == "train_churn"
    assert tags["airflow_run_id"] == first_run.run_id
    assert tags["trigger_reason"] == "test: first training run"
    assert tags["git_commit"] == git_commit()
    assert tags["spec_sha256"] == spec_named("churn").sha256()
    assert tags["window_start"] == (WINDOW_END - timedelta(days=27)).isoformat()
    assert tags["window_end"] == WINDOW_END.isoformat()
    assert float(tags["metric.roc_auc"]) >= 0.75

    outcome = first_run.xcoms["report"]
    assert outcome["status"] == "registered"
    assert outcome["version"] == "1" and outcome["new_version"] is True


def test_first_run_logs_dataset_params_and_gate_to_mlflow(first_run) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(first_run.xcoms["train"]["mlflow_run_id"])
    assert run.data.params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert run.data.params["split.seed"] == "42"
    assert {"holdout_roc_auc", "holdout_log_loss", "gate_passed"} <= set(run.data.metrics)
    assert run.data.metrics["gate_passed"] == 1.0
    (dataset_input,) = run.inputs.dataset_inputs
    assert first_run.xcoms["ingest"]["uri"] in dataset_input.dataset.source
    assert first_run.xcoms["ingest"]["sha256"].startswith(dataset_input.dataset.digest)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "gate")}
    assert {"gate/decision.json", "gate/decision.txt"} <= artifacts


def test_rerun_on_same_window_has_same_snapshot_and_registers_nothing_new(
    first_run, run_dag
) -> None:
    rerun = run_dag("train_churn", {"window_end": WINDOW_END.isoformat(), "reason": "test: rerun"})

    assert rerun.state == "success", rerun.task_states
    assert rerun.xcoms["ingest"]["sha256"] == first_run.xcoms["ingest"]["sha256"]
    assert rerun.xcoms["ingest"]["uri"] == first_run.xcoms["ingest"]["uri"]
    # Same snapshot, spec and code: the deterministic model is the same, so no duplicate version.
    assert rerun.xcoms["report"]["new_version"] is False
    assert [v.version for v in _versions("churn")] == ["1"]
    assert _champion("churn").version == "1"


def test_corrupted_partition_fails_at_validate_and_champion_stays(
    first_run, run_dag, settings
) -> None:
    from trainyard.core import storage
    from trainyard.data.validation import ValidationReport, load_suite_json, result_prefix
    from trainyard_dev.churn import Knobs, land_days

    champion_before = _champion("churn").version
    land_days(settings, CORRUPT_DAY, CORRUPT_DAY, 1000, Knobs(corruption=("out_of_range",)))

    run = run_dag("train_churn", {"window_end": CORRUPT_DAY.isoformat()})

    assert run.state == "failed"
    assert run.task_states["ingest"] == "success"
    assert run.task_states["validate"] == "failed"
    for downstream in ("train", "evaluate", "gate", "register", "report"):
        assert run.task_states[downstream] == "upstream_failed", downstream
    _, suite_sha = load_suite_json(settings, "churn")
    prefix = result_prefix(settings, "churn", run.xcoms["ingest"]["sha256"], suite_sha)
    report = ValidationReport.model_validate_json(
        storage.get_bytes(settings, f"{prefix}/report.json")
    )
    assert not report.success
    failed = {(f.column, f.expectation) for f in report.failures}
    assert failed == {("tenure_months", "expect_column_values_to_be_between")}
    (failure,) = report.failures
    assert failure.unexpected_count and failure.unexpected_count > 0
    assert failure.sample and set(failure.sample) == {-5}
    assert storage.exists(settings, report.result_uri)
    assert _champion("churn").version == champion_before
    assert len(_versions("churn")) == 1


def test_worse_model_is_rejected_by_gate_and_champion_stays(first_run, run_dag) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    # churn_worse registers its own model; give it churn's champion to be compared with.
    copied = client.copy_model_version("models:/churn@champion", "churn_worse")
    client.set_registered_model_alias("churn_worse", "champion", copied.version)
    champion_before = _champion("churn_worse").version
    run = run_dag("train_churn_worse", {"window_end": WINDOW_END.isoformat()})

    # Not a crash: the run succeeds, register is skipped, the report says why.
    assert run.state == "success", run.task_states
    assert run.task_states["gate"] == "success"
    assert run.task_states["register"] == "skipped"
    assert run.task_states["report"] == "success"
    outcome = run.xcoms["report"]
    assert outcome["status"] == "rejected_by_gate"
    assert outcome["champion_version"] == champion_before
    decision = run.xcoms["evaluate"]
    assert decision["passed"] is False
    failed_rules = {check["rule"] for check in decision["checks"] if not check["passed"]}
    assert "floor" in failed_rules
    assert any(rule.startswith("not worse than champion") for rule in failed_rules)
    assert decision["champion"]["roc_auc"] >= 0.75
    assert _champion("churn_worse").version == champion_before
    assert len(_versions("churn_worse")) == 1
    assert len(_versions("churn")) == 1
    run_tags = client.get_run(run.xcoms["train"]["mlflow_run_id"]).data.tags
    assert run_tags["gate_decision"] == "rejected"
    assert "registered_version" not in run_tags


def test_missing_partitions_fail_ingest_naming_the_dates(first_run, run_dag) -> None:
    run = run_dag("train_churn", {"window_end": "2024-01-10", "window_days": 3})

    assert run.state == "failed"
    assert run.task_states["ingest"] == "failed"
    assert run.task_states["validate"] == "upstream_failed"
    assert _champion("churn").version == "1"


def test_missing_partitions_skip_the_run_when_the_spec_says_so(churn_data, run_dag) -> None:
    run = run_dag("train_churn_skip", {"window_end": "2024-01-10", "window_days": 3})

    assert run.task_states["ingest"] == "skipped"
    assert set(run.task_states.values()) == {"skipped"}
    assert _versions("churn_skip") == []


def test_static_sklearn_dataset_pipeline_registers_its_champion(stack, run_dag) -> None:
    run = run_dag("train_breast_cancer", {"reason": "test: static dataset"})

    assert run.state == "success", run.task_states
    outcome = run.xcoms["report"]
    assert outcome["status"] == "registered"
    assert outcome["metrics"]["roc_auc"] >= 0.95
    champion = _champion("breast_cancer")
    assert champion.tags["trigger_reason"] == "test: static dataset"
    assert run.xcoms["ingest"]["rows"] == 569
