"""End to end: the drift monitor under ``dag.test()`` on SeaweedFS S3 and an MLflow server.

Uses the test-only pipeline ``churn_drift`` (its own raw prefix and registered model) and fixed
dates. Each test sets up the state it needs with fixtures, so any order (and ``-k``) works:
version 1, trained on January, is made the champion again before each test that needs it (the
retrain test replaces it); the drift run that triggers a retrain is a module fixture, which
records what it created right away; the forced run gets a training run queued for it alone.
The no-champion case runs the monitor of ``churn_no_champion``, a model nothing registers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest

from tests.support import (
    DagRunResult,
    champion_of,
    dag_runs,
    delete_dag_run,
    execute_existing_run,
    make_champion,
    model_versions,
    queue_dag_run,
)

pytestmark = pytest.mark.e2e

PIPELINE = "churn_drift"
DRIFT_DAG = "drift_churn_drift"
TRAIN_DAG = "train_churn_drift"
#: A pipeline with churn_drift's data whose model nobody ever trains.
NO_CHAMPION = "churn_no_champion"
#: Training-run states that block a retrain (trainyard.drift.tasks.ACTIVE_STATES).
ACTIVE = ("queued", "running")
# The champion trains on January; the retrain's 28 days end on DRIFT_DAY and do not overlap
# January, so the gate scores the champion on rows it has never seen.
REFERENCE_END = date(2026, 1, 28)
STABLE_DAY = date(2026, 2, 25)
DRIFT_DAY = date(2026, 2, 26)
STORM_DAY = date(2026, 2, 27)
TINY_DAY = date(2026, 3, 10)
BROKEN_DAY = date(2026, 3, 11)
DRIFTED = {"support_calls": 1.0, "data_usage_gb": 1.0}


def _land(settings: Any, day: date, rows: int = 1000, **knobs: Any) -> None:
    from trainyard_dev.churn import Knobs, land_days

    land_days(settings, day, day, rows, Knobs(**knobs), prefix=PIPELINE)


@pytest.fixture(scope="module")
def drift_data(settings: Any) -> None:
    """Stable days from 1 January to STABLE_DAY; drifted, tiny and broken days after it."""
    from trainyard_dev.churn import land_days

    land_days(settings, date(2026, 1, 1), STABLE_DAY, 1000, prefix=PIPELINE)
    _land(settings, DRIFT_DAY, covariate_drift=DRIFTED)
    _land(settings, STORM_DAY, covariate_drift=DRIFTED)
    # Drifted too: only the row count (tiny) or the data quality (broken) stops a verdict.
    _land(settings, TINY_DAY, rows=150, covariate_drift=DRIFTED)
    _land(settings, BROKEN_DAY, covariate_drift=DRIFTED, corruption=("out_of_range",))


def _drift(run_dag, window_end: date, **conf: Any) -> DagRunResult:
    return run_dag(DRIFT_DAG, {"window_end": window_end.isoformat(), **conf})


def _drift_retrains() -> list[dict[str, Any]]:
    """Runs of the training DAG the drift monitor created (``retrain__<slot>``, or
    ``drift__forced__…`` when forced)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import or_, select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(
                DagRun.dag_id == TRAIN_DAG,
                or_(DagRun.run_id.startswith("retrain__"), DagRun.run_id.startswith("drift__")),
            )
        ).all()
        return [
            {"run_id": run.run_id, "state": str(run.state), "conf": dict(run.conf or {})}
            for run in runs
        ]


def _drift_retrain_ids() -> set[str]:
    return {run["run_id"] for run in _drift_retrains()}


def _summary(settings: Any, run: DagRunResult) -> Any:
    from trainyard.core import storage
    from trainyard.drift.steps import DriftSummary

    uri = run.xcoms["check_drift"]["summary_uri"]
    return DriftSummary.model_validate_json(storage.get_bytes(settings, uri))


def _decision(settings: Any, run: DagRunResult, pipeline: str = PIPELINE) -> Any:
    from trainyard.core import storage
    from trainyard.drift.ledger import decision_uri
    from trainyard.drift.policy import RetrainDecision

    body = storage.get_bytes(settings, decision_uri(settings, pipeline, run.run_id))
    return RetrainDecision.model_validate_json(body)


def _monitoring_run(run: DagRunResult) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"{PIPELINE}-monitoring")
    (found,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.airflow_run_id = '{run.run_id}'"
    )
    return found


# ---- the state each case needs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_model(drift_data, run_dag) -> DagRunResult:
    """Version 1 of churn_drift, trained on January: the reference the drift checks compare with.

    Every test that touches this model's registry uses this fixture, so it is the first
    version registered, whatever the test order.
    """
    run = run_dag(TRAIN_DAG, {"window_end": REFERENCE_END.isoformat(), "reason": "test: v1"})
    assert run.state == "success", run.task_states
    assert run.xcoms["report"]["status"] == "registered", run.xcoms["report"]
    assert run.xcoms["report"]["version"] == "1"
    assert champion_of(PIPELINE).version == "1"
    return run


@pytest.fixture
def champion(reference_model) -> DagRunResult:
    """The January model as the champion (the retrain test replaces it): its training run."""
    make_champion(PIPELINE, reference_model.xcoms["report"]["version"])
    return reference_model


@dataclass
class Triggered:
    """The drift run that triggered a retrain, and what it created, read right after it ran."""

    run: DagRunResult
    #: The runs of the training DAG it created (as ``_drift_retrains`` lists them).
    retrains: list[dict[str, Any]]
    #: The retrain ledger after it (the start of the cooldown).
    ledger: Any


@pytest.fixture(scope="module")
def drift_run(reference_model, run_dag, settings) -> Triggered:
    """Drift on DRIFT_DAY against champion v1, with no cooldown running and no training queued."""
    from trainyard.drift.ledger import last_retrain

    make_champion(PIPELINE, reference_model.xcoms["report"]["version"])
    assert last_retrain(settings, PIPELINE) is None, "a retrain was requested before this one"
    assert dag_runs(TRAIN_DAG, states=ACTIVE) == {}, "training runs are already queued"
    before = _drift_retrain_ids()

    run = _drift(run_dag, DRIFT_DAY)

    created = [retrain for retrain in _drift_retrains() if retrain["run_id"] not in before]
    return Triggered(run=run, retrains=created, ledger=last_retrain(settings, PIPELINE))


@pytest.fixture
def queued_training_run(champion) -> Iterator[str]:
    """A run of the training DAG waiting in the queue, for this test only (deleted after it)."""
    run_id = f"manual__test_queued_{uuid4().hex[:12]}"
    queue_dag_run(TRAIN_DAG, run_id, {"reason": "test: waits in the queue"})
    try:
        yield run_id
    finally:
        delete_dag_run(TRAIN_DAG, run_id)


# ---- the cases --------------------------------------------------------------------------------


def test_without_a_champion_the_run_says_so_and_ends_cleanly(drift_data, run_dag, settings):
    from trainyard.core import storage

    assert model_versions(NO_CHAMPION) == set()  # nothing registers this model

    run = run_dag(f"drift_{NO_CHAMPION}", {"window_end": STABLE_DAY.isoformat()})

    assert run.state == "success", run.task_states
    assert set(run.task_states.values()) == {"skipped"}, run.task_states
    decision = _decision(settings, run, NO_CHAMPION)
    assert decision.action == "no_champion" and not decision.retrain
    assert f"no champion of model '{NO_CHAMPION}'" in decision.message
    assert storage.list_keys(settings, settings.artifacts_bucket, f"drift/{NO_CHAMPION}/ref-") == []
    assert dag_runs(f"train_{NO_CHAMPION}") == {}


def test_stable_data_no_drift_no_training_run(champion, run_dag, settings) -> None:
    retrains_before = _drift_retrain_ids()

    run = _drift(run_dag, STABLE_DAY)

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "no_drift"
    assert summary.drifted_columns == []
    assert summary.reference.snapshot_uri == champion.xcoms["ingest"]["uri"]
    assert (summary.current.window_start, summary.current.window_end) == (STABLE_DAY, STABLE_DAY)
    assert summary.column_count == 10 and len(summary.columns) == 10
    assert _decision(settings, run).action == "no_drift"
    assert run.task_states["trigger_retrain"] == "skipped"
    assert _drift_retrain_ids() == retrains_before
    assert _monitoring_run(run).data.tags["verdict"] == "no_drift"


def test_cli_drift_check_gives_the_same_verdict_without_airflow(champion, capsys) -> None:
    from trainyard.cli import main
    from trainyard.drift.steps import DriftSummary

    retrains_before = _drift_retrain_ids()

    code = main(["drift", PIPELINE, "--window-end", STABLE_DAY.isoformat()])

    printed = capsys.readouterr()
    assert code == 0
    summary = DriftSummary.model_validate_json(printed.out)
    assert summary.verdict == "no_drift"
    assert summary.current.window_end == STABLE_DAY
    assert "would give: " in printed.err
    assert _drift_retrain_ids() == retrains_before


def test_tiny_current_sample_is_insufficient_data_no_trigger(champion, run_dag, settings) -> None:
    from trainyard.core import storage

    retrains_before = _drift_retrain_ids()

    run = _drift(run_dag, TINY_DAY)

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "insufficient_data"
    assert summary.current.rows == 150 and summary.min_rows == 500
    assert summary.drift_share is None and summary.columns == []
    assert summary.report_uri is None
    prefix = summary.summary_uri.rsplit("/", 1)[0]
    assert not storage.exists(settings, f"{prefix}/report.html")
    decision = _decision(settings, run)
    assert decision.action == "insufficient_data" and not decision.retrain
    assert run.task_states["trigger_retrain"] == "skipped"
    assert _drift_retrain_ids() == retrains_before


def test_corrupted_batch_is_a_validation_failure_not_a_verdict(champion, run_dag, settings):
    from trainyard.core import storage
    from trainyard.data.validation import ValidationReport, load_suite_json, result_prefix

    retrains_before = _drift_retrain_ids()

    run = _drift(run_dag, BROKEN_DAY)

    assert run.state == "failed"
    assert run.task_states["current"] == "success"
    assert run.task_states["validate"] == "failed"
    for task_id in ("check_drift", "decide", "retrain_requested", "trigger_retrain"):
        assert run.task_states[task_id] == "upstream_failed", task_id
    current_sha = run.xcoms["current"]["sha256"]
    _, suite_sha = load_suite_json(settings, "churn")
    report = ValidationReport.model_validate_json(
        storage.get_bytes(
            settings, f"{result_prefix(settings, PIPELINE, current_sha, suite_sha)}/report.json"
        )
    )
    assert {(f.column, f.expectation) for f in report.failures} == {
        ("tenure_months", "expect_column_values_to_be_between")
    }
    drift_keys = storage.list_keys(settings, settings.artifacts_bucket, f"drift/{PIPELINE}/ref-")
    assert not [key for key in drift_keys if f"/cur-{current_sha[:16]}/" in key]
    decision = _decision(settings, run)
    assert decision.action == "data_quality_failure"
    assert "tenure_months" in decision.message
    assert _drift_retrain_ids() == retrains_before


def test_covariate_drift_names_the_two_columns_and_triggers_one_retrain(
    drift_run, settings
) -> None:
    from mlflow import MlflowClient

    from trainyard.core import storage

    run = drift_run.run
    assert run.state == "success", run.task_states
    assert set(run.task_states.values()) == {"success"}, run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "drift"
    assert set(summary.drifted_columns) == set(DRIFTED)
    assert summary.drift_share == pytest.approx(0.2)
    for column in summary.columns:
        assert column.method and column.threshold > 0
        assert column.drifted == (column.column in DRIFTED), column
    html = storage.get_bytes(settings, summary.report_uri)
    assert b"<html" in html[:2000].lower() and len(html) > 100_000

    (retrain,) = drift_run.retrains
    decision = run.xcoms["decide"]
    assert decision["action"] == "retrain"
    assert retrain["run_id"] == decision["training_run_id"]
    assert retrain["state"] == "queued"
    conf = retrain["conf"]
    assert conf["drift_report_uri"] == summary.report_uri
    assert set(conf["drifted_columns"]) == set(DRIFTED)
    assert conf["drift_share"] == pytest.approx(0.2)
    assert conf["window_end"] == DRIFT_DAY.isoformat()
    assert conf["reason"].startswith("drift: ") and summary.report_uri in conf["reason"]
    assert all(column in conf["reason"] for column in DRIFTED)
    ledger = drift_run.ledger
    assert ledger is not None and ledger.training_run_id == retrain["run_id"]
    assert ledger.monitor_run_id == run.run_id

    monitoring = _monitoring_run(run)
    assert monitoring.data.metrics["drift_share"] == pytest.approx(0.2)
    assert monitoring.data.metrics["drifted_columns"] == 2
    assert monitoring.data.tags["retrain_decision"] == "retrain"
    artifacts = {a.path for a in MlflowClient().list_artifacts(monitoring.info.run_id, "drift")}
    assert {"drift/report.html", "drift/summary.json"} <= artifacts


def test_forced_run_is_still_suppressed_while_a_training_run_is_queued(
    queued_training_run, run_dag, settings
) -> None:
    from trainyard.drift.ledger import last_retrain

    active = dag_runs(TRAIN_DAG, states=ACTIVE)
    assert active[queued_training_run] == "queued"
    retrains_before = _drift_retrain_ids()
    ledger_before = last_retrain(settings, PIPELINE)

    run = _drift(run_dag, DRIFT_DAY, force=True)

    assert run.state == "success", run.task_states
    decision = run.xcoms["decide"]
    assert decision["action"] == "suppressed_active"
    assert decision["forced"] is True
    assert decision["active_training_runs"] == len(active)
    assert run.task_states["trigger_retrain"] == "skipped"
    assert run.task_states["record_retrain"] == "skipped"
    assert _drift_retrain_ids() == retrains_before
    assert last_retrain(settings, PIPELINE) == ledger_before


def test_triggered_training_run_records_the_drift_report_in_lineage(drift_run, champion) -> None:
    (retrain,) = drift_run.retrains
    versions_before = model_versions(PIPELINE)

    run = execute_existing_run(TRAIN_DAG, retrain["run_id"])

    assert run.state == "success", run.task_states
    assert run.xcoms["ingest"]["window_end"] == DRIFT_DAY.isoformat()
    outcome = run.xcoms["report"]
    assert outcome["status"] == "registered", outcome["gate"]
    assert outcome["new_version"] is True
    assert model_versions(PIPELINE) - versions_before == {outcome["version"]}
    new_champion = champion_of(PIPELINE)
    assert new_champion.version == outcome["version"] != champion.xcoms["report"]["version"]
    assert new_champion.tags["airflow_run_id"] == retrain["run_id"]
    assert new_champion.tags["drift_report_uri"] == retrain["conf"]["drift_report_uri"]
    assert new_champion.tags["trigger_reason"] == retrain["conf"]["reason"]


def test_ten_drift_runs_inside_the_cooldown_still_one_retrain(
    drift_run, champion, run_dag, settings
):
    from trainyard.drift.ledger import last_retrain

    ledger_before = last_retrain(settings, PIPELINE)
    assert ledger_before == drift_run.ledger  # the cooldown the triggered retrain started
    retrains_before = _drift_retrain_ids()

    runs = [_drift(run_dag, STORM_DAY) for _ in range(10)]

    assert _drift_retrain_ids() == retrains_before
    for run in runs:
        assert run.state == "success", run.task_states
        assert run.xcoms["check_drift"]["verdict"] == "drift"
        decision = _decision(settings, run)  # every run records its verdict and decision
        assert decision.action == "suppressed_cooldown"
        assert "retrain suppressed: cooldown until " in decision.message
        assert decision.cooldown_until == ledger_before.requested_at + timedelta(hours=6)
        assert run.task_states["trigger_retrain"] == "skipped"
        assert run.task_states["record_retrain"] == "skipped"
    assert last_retrain(settings, PIPELINE) == ledger_before
