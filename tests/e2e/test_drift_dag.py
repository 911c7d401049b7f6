"""End to end: the drift monitor under ``dag.test()`` on SeaweedFS S3 and an MLflow server.

Uses the test-only pipeline ``churn_drift`` (its own raw prefix and registered model), fixed
dates, and runs in file order: no champion yet → a champion → stable, tiny and broken batches
(nothing triggered) → drift (one retrain) → the retrain executed → a storm inside the cooldown.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import DagRunResult, _xcoms

pytestmark = pytest.mark.e2e

PIPELINE = "churn_drift"
DRIFT_DAG = "drift_churn_drift"
TRAIN_DAG = "train_churn_drift"
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
    """Runs of the training DAG the drift monitor created (run ids ``drift__…``)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == TRAIN_DAG, DagRun.run_id.startswith("drift__"))
        ).all()
        return [
            {"run_id": run.run_id, "state": str(run.state), "conf": dict(run.conf or {})}
            for run in runs
        ]


def _summary(settings: Any, run: DagRunResult) -> Any:
    from trainyard.core import storage
    from trainyard.drift.steps import DriftSummary

    uri = run.xcoms["check_drift"]["summary_uri"]
    return DriftSummary.model_validate_json(storage.get_bytes(settings, uri))


def _decision(settings: Any, run: DagRunResult) -> Any:
    from trainyard.core import storage
    from trainyard.drift.ledger import decision_uri
    from trainyard.drift.policy import RetrainDecision

    body = storage.get_bytes(settings, decision_uri(settings, PIPELINE, run.run_id))
    return RetrainDecision.model_validate_json(body)


def _monitoring_run(run: DagRunResult) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"{PIPELINE}-monitoring")
    (found,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.airflow_run_id = '{run.run_id}'"
    )
    return found


def _champion() -> Any:
    from mlflow import MlflowClient

    return MlflowClient().get_model_version_by_alias(PIPELINE, "champion")


def _execute_existing_run(dag_id: str, run_id: str) -> DagRunResult:
    """Execute a DAG run that already exists (the one the drift DAG triggered), in-process.

    ``dag.test()`` always creates a new run, so it cannot execute *this* run with *its* id and
    conf. This drives the existing run with the loop ``dag.test()`` uses (update the run's state,
    schedule ready tasks, run each with ``dag.test``'s in-process task runner), i.e. what the
    scheduler would do once it picked the queued run.
    """
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    dag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False).dags[dag_id]
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        assert run is not None and run.state == DagRunState.QUEUED, run
        run.dag = scheduler_dag
        run.state = DagRunState.RUNNING
        run.start_date = timezone.utcnow()
        session.commit()
        while run.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in run.get_task_instances(session=session):
                if ti.state == TaskInstanceState.SCHEDULED:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id])
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        state = str(run.state)
    return DagRunResult(
        run_id=run_id,
        state=state,
        task_states={k: (str(v) if v is not None else None) for k, v in states.items()},
        xcoms=_xcoms(dag_id, run_id),
    )


# ---- the cases --------------------------------------------------------------------------------


def test_without_a_champion_the_run_says_so_and_ends_cleanly(drift_data, run_dag, settings):
    from trainyard.core import storage

    run = _drift(run_dag, STABLE_DAY)

    assert run.state == "success", run.task_states
    assert set(run.task_states.values()) == {"skipped"}, run.task_states
    decision = _decision(settings, run)
    assert decision.action == "no_champion" and not decision.retrain
    assert "no champion of model 'churn_drift'" in decision.message
    assert storage.list_keys(settings, settings.artifacts_bucket, f"drift/{PIPELINE}/ref-") == []
    assert _drift_retrains() == []


@pytest.fixture(scope="module")
def champion(drift_data, run_dag) -> Any:
    run = run_dag(TRAIN_DAG, {"window_end": REFERENCE_END.isoformat(), "reason": "test: v1"})
    assert run.state == "success", run.task_states
    assert _champion().version == "1"
    return run


def test_stable_data_no_drift_no_training_run(champion, run_dag, settings) -> None:
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
    assert _drift_retrains() == []
    assert _monitoring_run(run).data.tags["verdict"] == "no_drift"


def test_cli_drift_check_gives_the_same_verdict_without_airflow(champion, capsys) -> None:
    from trainyard.cli import main
    from trainyard.drift.steps import DriftSummary

    code = main(["drift", PIPELINE, "--window-end", STABLE_DAY.isoformat()])

    printed = capsys.readouterr()
    assert code == 0
    summary = DriftSummary.model_validate_json(printed.out)
    assert summary.verdict == "no_drift"
    assert summary.current.window_end == STABLE_DAY
    assert "would give: " in printed.err
    assert _drift_retrains() == []


def test_tiny_current_sample_is_insufficient_data_no_trigger(champion, run_dag, settings) -> None:
    from trainyard.core import storage

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
    assert _drift_retrains() == []


def test_corrupted_batch_is_a_validation_failure_not_a_verdict(champion, run_dag, settings):
    from trainyard.core import storage
    from trainyard.data.validation import ValidationReport, load_suite_json, result_prefix

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
    assert _drift_retrains() == []


@pytest.fixture(scope="module")
def drift_run(champion, run_dag) -> DagRunResult:
    return _drift(run_dag, DRIFT_DAY)


def test_covariate_drift_names_the_two_columns_and_triggers_one_retrain(
    drift_run, run_dag, settings
) -> None:
    from mlflow import MlflowClient

    from trainyard.core import storage
    from trainyard.drift.ledger import last_retrain

    assert drift_run.state == "success", drift_run.task_states
    assert set(drift_run.task_states.values()) == {"success"}, drift_run.task_states
    summary = _summary(settings, drift_run)
    assert summary.verdict == "drift"
    assert set(summary.drifted_columns) == set(DRIFTED)
    assert summary.drift_share == pytest.approx(0.2)
    for column in summary.columns:
        assert column.method and column.threshold > 0
        assert column.drifted == (column.column in DRIFTED), column
    html = storage.get_bytes(settings, summary.report_uri)
    assert b"<html" in html[:2000].lower() and len(html) > 100_000

    (retrain,) = _drift_retrains()
    decision = drift_run.xcoms["decide"]
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
    ledger = last_retrain(settings, PIPELINE)
    assert ledger is not None and ledger.training_run_id == retrain["run_id"]
    assert ledger.drift_run_id == drift_run.run_id

    monitoring = _monitoring_run(drift_run)
    assert monitoring.data.metrics["drift_share"] == pytest.approx(0.2)
    assert monitoring.data.metrics["drifted_columns"] == 2
    assert monitoring.data.tags["retrain_decision"] == "retrain"
    artifacts = {a.path for a in MlflowClient().list_artifacts(monitoring.info.run_id, "drift")}
    assert {"drift/report.html", "drift/summary.json"} <= artifacts


def test_forced_run_is_still_suppressed_while_the_retrain_is_queued(drift_run, run_dag) -> None:
    run = _drift(run_dag, DRIFT_DAY, force=True)

    assert run.state == "success", run.task_states
    decision = run.xcoms["decide"]
    assert decision["action"] == "suppressed_active"
    assert decision["active_training_runs"] == 1
    assert run.task_states["trigger_retrain"] == "skipped"
    assert len(_drift_retrains()) == 1


def test_triggered_training_run_records_the_drift_report_in_lineage(drift_run, settings) -> None:
    (retrain,) = _drift_retrains()

    run = _execute_existing_run(TRAIN_DAG, retrain["run_id"])

    assert run.state == "success", run.task_states
    assert run.xcoms["ingest"]["window_end"] == DRIFT_DAY.isoformat()
    outcome = run.xcoms["report"]
    assert outcome["status"] == "registered", outcome["gate"]
    champion = _champion()
    assert champion.version == outcome["version"] == "2"
    assert champion.tags["airflow_run_id"] == retrain["run_id"]
    assert champion.tags["drift_report_uri"] == retrain["conf"]["drift_report_uri"]
    assert champion.tags["trigger_reason"] == retrain["conf"]["reason"]


def test_ten_drift_runs_inside_the_cooldown_still_one_retrain(drift_run, run_dag, settings):
    from trainyard.drift.ledger import last_retrain

    ledger_before = last_retrain(settings, PIPELINE)
    runs = [_drift(run_dag, STORM_DAY) for _ in range(10)]

    assert len(_drift_retrains()) == 1
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
