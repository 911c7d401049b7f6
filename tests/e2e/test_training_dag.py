"""End to end: the training DAG under ``dag.test()`` on SeaweedFS S3 and an MLflow server.

The cases share one registry model (``churn``). The first run (a module fixture, used by every
case that touches ``churn``) registers version 1; each later case makes that version the champion
again before it runs, and checks what it did against the registry as it found it, so the cases
pass in any order and alone (``-k``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from tests.support import LINEAGE_TAGS, champion_of, make_champion, model_versions, spec_named

pytestmark = pytest.mark.e2e

WINDOW_END = date(2026, 6, 30)
CORRUPT_DAY = date(2026, 7, 15)


@pytest.fixture(scope="module")
def churn_data(settings: Any) -> None:
    """Clean daily partitions for June and early July 2026 (1,000 rows a day)."""
    from trainyard_dev.churn import land_days

    land_days(settings, date(2026, 5, 20), CORRUPT_DAY - timedelta(days=1), rows_per_day=1000)


@dataclass
class FirstRun:
    """The first training run of ``churn``, and the registry it found and left."""

    run: Any
    versions_before: set[str]
    champion: Any


@pytest.fixture(scope="module")
def first_run(churn_data: None, run_dag) -> FirstRun:
    versions_before = model_versions("churn")
    run = run_dag(
        "train_churn",
        {"window_end": WINDOW_END.isoformat(), "reason": "test: first training run"},
    )
    champion = champion_of("churn") if run.state == "success" else None
    return FirstRun(run=run, versions_before=versions_before, champion=champion)


@pytest.fixture
def champion(first_run: FirstRun) -> str:
    """Make the first run's version the champion of ``churn`` again; return that version."""
    assert first_run.run.state == "success", first_run.run.task_states
    version = first_run.run.xcoms["report"]["version"]
    make_champion("churn", version)
    return version


def test_first_run_registers_champion_v1_with_full_lineage(first_run, settings) -> None:
    from trainyard.core import storage
    from trainyard.core.lineage import git_commit

    run, champion = first_run.run, first_run.champion
    assert run.state == "success", run.task_states
    assert set(run.task_states.values()) == {"success"}
    assert first_run.versions_before == set()  # the first version of "churn" this session
    assert champion.version == "1"
    tags = champion.tags
    assert set(tags) >= LINEAGE_TAGS, LINEAGE_TAGS - set(tags)

    snapshot = run.xcoms["ingest"]
    assert tags["snapshot_uri"] == snapshot["uri"]
    body = storage.get_bytes(settings, tags["snapshot_uri"])
    assert hashlib.sha256(body).hexdigest() == tags["snapshot_sha256"]
    assert tags["snapshot_uri"].endswith(f"/{tags['snapshot_sha256']}.parquet")
    assert storage.exists(settings, tags["validation_result_uri"])
    assert storage.exists(settings, tags["data_docs_uri"])
    assert tags["validation_success"] == "true"
    assert tags["airflow_dag_id"] == "train_churn"
    assert tags["airflow_run_id"] == run.run_id
    assert tags["trigger_reason"] == "test: first training run"
    assert tags["git_commit"] == git_commit()
    assert tags["spec_sha256"] == spec_named("churn").sha256()
    assert tags["window_start"] == (WINDOW_END - timedelta(days=27)).isoformat()
    assert tags["window_end"] == WINDOW_END.isoformat()
    assert float(tags["metric.roc_auc"]) >= 0.75

    outcome = run.xcoms["report"]
    assert outcome["status"] == "registered"
    assert outcome["version"] == "1" and outcome["new_version"] is True


def test_promotion_is_an_audit_event_naming_who_why_and_the_numbers(first_run, settings) -> None:
    from trainyard.governance import audit

    run = first_run.run
    assert run.state == "success", run.task_states
    (event,) = [e for e in audit.read_events(settings, "churn") if e.cause.run_id == run.run_id]
    assert (event.action, event.to_version) == ("promote", run.xcoms["report"]["version"])
    assert event.aliases_set["champion"] == event.to_version
    assert event.cause.dag_id == "train_churn"
    assert event.cause.reason == "test: first training run"
    assert event.cause.actor == "dag_test"  # the user dag.test() triggers as
    assert event.cause.details["mlflow_run_id"] == run.xcoms["train"]["mlflow_run_id"]
    assert float(event.cause.details["metric.roc_auc"]) >= 0.75
    assert first_run.champion.tags["triggered_by"] == "dag_test"


def test_first_run_logs_dataset_params_and_gate_to_mlflow(first_run) -> None:
    from mlflow import MlflowClient

    dag_run = first_run.run
    client = MlflowClient()
    run = client.get_run(dag_run.xcoms["train"]["mlflow_run_id"])
    assert run.data.params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert run.data.params["split.seed"] == "42"
    assert {"holdout_roc_auc", "holdout_log_loss", "gate_passed"} <= set(run.data.metrics)
    assert run.data.metrics["gate_passed"] == 1.0
    (dataset_input,) = run.inputs.dataset_inputs
    assert dag_run.xcoms["ingest"]["uri"] in dataset_input.dataset.source
    assert dag_run.xcoms["ingest"]["sha256"].startswith(dataset_input.dataset.digest)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "gate")}
    assert {"gate/decision.json", "gate/decision.txt"} <= artifacts


def test_registered_version_has_a_model_card_mlflow_shows(first_run, settings, capsys) -> None:
    from mlflow import MlflowClient

    from trainyard.cli import main
    from trainyard.governance.model_card import RUN_ARTIFACT, card_uri, read_card

    run = first_run.run
    assert run.state == "success", run.task_states
    version = run.xcoms["report"]["version"]
    card = read_card(settings, "churn", version)
    assert card is not None, f"no card at {card_uri(settings, 'churn', version)}"
    window_start = (WINDOW_END - timedelta(days=27)).isoformat()
    assert f"window: {window_start} to {WINDOW_END.isoformat()}" in card
    assert f"{run.xcoms['ingest']['rows']} rows in the snapshot" in card
    for metric, value in run.xcoms["evaluate"]["challenger"].items():
        assert f"| {metric} | {value:.4f} |" in card
    assert run.xcoms["train"]["mlflow_run_id"] in card
    assert spec_named("churn").intended_use in " ".join(card.split())

    client = MlflowClient()
    assert client.get_model_version("churn", version).description == card
    run_id = run.xcoms["train"]["mlflow_run_id"]
    assert RUN_ARTIFACT in {a.path for a in client.list_artifacts(run_id)}

    capsys.readouterr()
    assert main(["card", "churn", "--version", version]) == 0
    assert capsys.readouterr().out == card


def test_rerun_on_same_window_has_same_snapshot_and_registers_nothing_new(
    first_run, champion, run_dag
) -> None:
    versions_before = model_versions("churn")

    rerun = run_dag("train_churn", {"window_end": WINDOW_END.isoformat(), "reason": "test: rerun"})

    assert rerun.state == "success", rerun.task_states
    assert rerun.xcoms["ingest"]["sha256"] == first_run.run.xcoms["ingest"]["sha256"]
    assert rerun.xcoms["ingest"]["uri"] == first_run.run.xcoms["ingest"]["uri"]
    # Same snapshot, spec and code: the deterministic model is the same, so no duplicate version.
    assert rerun.xcoms["report"]["new_version"] is False
    assert rerun.xcoms["report"]["version"] == champion
    assert model_versions("churn") == versions_before
    assert champion_of("churn").version == champion


def test_corrupted_partition_fails_at_validate_and_champion_stays(
    champion, run_dag, settings
) -> None:
    from trainyard.core import storage
    from trainyard.data.validation import ValidationReport, load_suite_json, result_prefix
    from trainyard_dev.churn import Knobs, land_days

    versions_before = model_versions("churn")
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
    assert champion_of("churn").version == champion
    assert model_versions("churn") == versions_before


def test_worse_model_is_rejected_by_gate_and_champion_stays(champion, run_dag) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    # churn_worse registers its own model; give it churn's champion to be compared with.
    copied = client.copy_model_version("models:/churn@champion", "churn_worse")
    client.set_registered_model_alias("churn_worse", "champion", copied.version)
    versions_before = {name: model_versions(name) for name in ("churn", "churn_worse")}

    run = run_dag("train_churn_worse", {"window_end": WINDOW_END.isoformat()})

    # Not a crash: the run succeeds, register is skipped, the report says why.
    assert run.state == "success", run.task_states
    assert run.task_states["gate"] == "success"
    assert run.task_states["register"] == "skipped"
    assert run.task_states["report"] == "success"
    outcome = run.xcoms["report"]
    assert outcome["status"] == "rejected_by_gate"
    assert outcome["champion_version"] == copied.version
    decision = run.xcoms["evaluate"]
    assert decision["passed"] is False
    failed_rules = {check["rule"] for check in decision["checks"] if not check["passed"]}
    assert "floor" in failed_rules
    assert any(rule.startswith("not worse than champion") for rule in failed_rules)
    assert decision["champion"]["roc_auc"] >= 0.75
    assert champion_of("churn_worse").version == copied.version
    assert champion_of("churn").version == champion
    assert {name: model_versions(name) for name in ("churn", "churn_worse")} == versions_before
    run_tags = client.get_run(run.xcoms["train"]["mlflow_run_id"]).data.tags
    assert run_tags["gate_decision"] == "rejected"
    assert "registered_version" not in run_tags


def test_missing_partitions_fail_ingest_naming_the_dates(champion, run_dag) -> None:
    versions_before = model_versions("churn")

    run = run_dag("train_churn", {"window_end": "2024-01-10", "window_days": 3})

    assert run.state == "failed"
    assert run.task_states["ingest"] == "failed"
    assert run.task_states["validate"] == "upstream_failed"
    assert champion_of("churn").version == champion
    assert model_versions("churn") == versions_before


def test_missing_partitions_skip_the_run_when_the_spec_says_so(churn_data, run_dag) -> None:
    run = run_dag("train_churn_skip", {"window_end": "2024-01-10", "window_days": 3})

    assert run.task_states["ingest"] == "skipped"
    assert set(run.task_states.values()) == {"skipped"}
    assert model_versions("churn_skip") == set()


def test_static_sklearn_dataset_pipeline_registers_its_champion(stack, run_dag) -> None:
    run = run_dag("train_breast_cancer", {"reason": "test: static dataset"})

    assert run.state == "success", run.task_states
    outcome = run.xcoms["report"]
    assert outcome["status"] == "registered"
    assert outcome["metrics"]["roc_auc"] >= 0.95
    champion = champion_of("breast_cancer")
    assert champion.tags["trigger_reason"] == "test: static dataset"
    assert run.xcoms["ingest"]["rows"] == 569
