"""Alerts end to end: real DAG runs (``dag.test()`` on SeaweedFS S3 and an MLflow server) deliver
to a real SMTP server (aiosmtpd) and a real HTTP receiver, started by this module.

Each event must arrive exactly once per channel (e-mail, Slack-compatible webhook, JSON webhook)
with its numbers; a rerun of the same DAG run sends nothing again; a dead SMTP server neither
fails the run nor stops the other channels. Test-only pipelines (tests/pipelines/alerts_*.yaml)
keep their own data and models, so the cases pass in any order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from tests.support import (
    AlertInbox,
    champion_of,
    make_champion,
    register_tiny_model,
    rerun_dag_run,
    spec_named,
)

pytestmark = pytest.mark.e2e

CHURN = "alerts_churn"
TRAIN_END = date(2026, 4, 7)
CORRUPT_DAY = date(2026, 4, 20)
DRIFT_DAY = date(2026, 4, 21)
SCORED_DAY = date(2026, 4, 22)
ROWS = 800


@pytest.fixture(scope="module")
def inbox() -> Iterator[AlertInbox]:
    receiver = AlertInbox()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def alerting(inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    """Alerts of this test go to the inbox (dag.test() runs the tasks in this process)."""
    for name, value in inbox.environment().items():
        monkeypatch.setenv(name, value)
    return inbox


def _one_per_channel(inbox: AlertInbox, kind: str, run_id: str) -> tuple[dict, Any, dict]:
    """The event's JSON alert, e-mail and Slack post; exactly one of each."""
    (alert,) = inbox.alerts(kind, run_id)
    (email,), (slack,) = inbox.delivered(alert)
    # SMTP folds long headers and ends lines with CRLF: compare the words and the lines.
    assert str(email["Subject"]).split() == alert["subject"].split()
    lines = [line.rstrip() for line in email.get_content().strip().splitlines()]
    assert lines == [line.rstrip() for line in alert["text"].strip().splitlines()]
    assert alert["subject"] in slack["text"]
    return alert, email, slack


def _counts(inbox: AlertInbox, kind: str, run_id: str) -> tuple[int, int, int]:
    alerts = inbox.alerts(kind, run_id)
    emails, slack = inbox.delivered(alerts[0]) if alerts else ([], [])
    return len(alerts), len(emails), len(slack)


# ---- the gate --------------------------------------------------------------------------------


def test_a_gate_rejection_arrives_once_with_its_numbers_and_a_rerun_sends_none(
    run_dag, alerting
) -> None:
    run = run_dag("train_alerts_gate", {"reason": "test: alerts"})

    assert run.state == "success", run.task_states
    assert run.task_states["register"] == "skipped"
    alert, email, _ = _one_per_channel(alerting, "gate_rejected", run.run_id)
    challenger = run.xcoms["evaluate"]["challenger"]
    assert alert["facts"]["challenger"] == challenger
    assert f"[FAIL] floor: roc_auc={challenger['roc_auc']:.4f} vs bound 0.9500" in alert["text"]
    assert unquote(alert["links"]["Airflow run"]) == (
        f"http://airflow.example:8080/dags/train_alerts_gate/runs/{run.run_id}"
    )
    mlflow_run = run.xcoms["train"]["mlflow_run_id"]
    assert f"/runs/{mlflow_run}" in alert["links"]["MLflow run"]
    assert mlflow_run in email.get_content()

    rerun = rerun_dag_run("train_alerts_gate", run.run_id)

    assert rerun.state == "success", rerun.task_states
    assert _counts(alerting, "gate_rejected", run.run_id) == (1, 1, 1)


def test_a_task_failing_after_its_retries_alerts_once(run_dag, alerting, monkeypatch) -> None:
    """S3 unreachable: ``ingest`` is retried twice, then fails; one alert, sent without S3 (its
    sent-markers cannot be written, which is logged)."""
    from trainyard_dev.services import free_ports

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_ports(1)[0]}")
    monkeypatch.setenv("TRAINYARD_SERVICE_TIMEOUT", "2")
    monkeypatch.setenv("TRAINYARD_SERVICE_RETRIES", "0")
    monkeypatch.setenv("TRAINYARD_TASK_RETRY_DELAY", "1")

    run = run_dag("train_alerts_gate", {"reason": "test: S3 down"})

    assert run.state == "failed", run.task_states
    assert run.task_states["ingest"] == "failed"
    alert, _, _ = _one_per_channel(alerting, "task_failed", run.run_id)
    assert alert["facts"]["task_id"] == "ingest"
    assert alert["facts"]["tries"] == 3
    assert "S3" in alert["facts"]["error"]
    assert unquote(alert["links"]["Airflow task"]).endswith(f"/runs/{run.run_id}/tasks/ingest")


# ---- alerts_churn: validation, drift, decay --------------------------------------------------


@pytest.fixture(scope="module")
def churn_champion(stack: Any, settings: Any) -> str:
    """v1 of alerts_churn trained on a week of stable days, then a corrupted, a drifted and a
    scored day (its labels landed later, following another rule: the champion decays)."""
    from trainyard.core import storage
    from trainyard.core.lineage import RunContext
    from trainyard.data.snapshots import TrainingWindow
    from trainyard.scoring import steps as scoring
    from trainyard.training import steps as training
    from trainyard_dev.churn import Knobs, generate_day, land_days, partition_uri

    spec = spec_named(CHURN)
    land_days(settings, TRAIN_END - timedelta(days=6), TRAIN_END, ROWS, prefix=CHURN)
    window = TrainingWindow.ending(TRAIN_END, spec.window.days)
    outcome = training.run(spec, settings, window, RunContext.for_cli(CHURN, "test: v1"))
    assert outcome.status == "registered", outcome
    land_days(settings, CORRUPT_DAY, CORRUPT_DAY, ROWS, Knobs(corruption=("out_of_range",)), CHURN)
    drifted = {"support_calls": 1.0, "data_usage_gb": 1.0}
    land_days(settings, DRIFT_DAY, DRIFT_DAY, ROWS, Knobs(covariate_drift=drifted), CHURN)
    land_days(settings, SCORED_DAY, SCORED_DAY, ROWS, Knobs(labels_missing=True), prefix=CHURN)
    make_champion(CHURN, outcome.version)
    scoring.run(spec, settings, SCORED_DAY, "test_alerts_scoring", datetime.now(UTC), SCORED_DAY)
    labelled = generate_day(SCORED_DAY, ROWS, Knobs(concept_drift=0.8))
    storage.put_bytes(
        settings,
        partition_uri(settings.raw_bucket, CHURN, SCORED_DAY),
        storage.parquet_bytes(labelled),
    )
    return outcome.version


@pytest.fixture
def champion(churn_champion: str) -> str:
    make_champion(CHURN, churn_champion)
    return churn_champion


def test_a_validation_failure_lists_the_failed_expectations(run_dag, alerting, champion) -> None:
    run = run_dag("train_alerts_churn", {"window_end": CORRUPT_DAY.isoformat(), "window_days": 1})

    assert run.state == "failed", run.task_states
    assert run.task_states["validate"] == "failed"
    alert, email, _ = _one_per_channel(alerting, "task_failed", run.run_id)
    assert alert["facts"]["task_id"] == "validate"
    (failure,) = alert["facts"]["failed_expectations"]
    assert failure.startswith("tenure_months: expect_column_values_to_be_between")
    assert "Failed expectations (1):" in email.get_content()
    assert {"Airflow task", "validation result"} <= set(alert["links"])
    assert champion_of(CHURN).version == champion


def _decision(settings: Any, run: Any, signal: str) -> Any:
    from trainyard.core import storage
    from trainyard.drift.ledger import decision_uri
    from trainyard.drift.policy import RetrainDecision

    body = storage.get_bytes(settings, decision_uri(settings, CHURN, run.run_id, signal))
    return RetrainDecision.model_validate_json(body)


def _outcome_line(decision: Any) -> str:
    """What the alert must say storm protection did (the two monitors share one cooldown, so
    whichever of the drift and decay cases runs second is suppressed by the first)."""
    if decision.retrain:
        return f"retrain triggered: train_alerts_churn run {decision.training_run_id}"
    return f"retrain suppressed: cooldown until {decision.cooldown_until.isoformat()}"


def test_a_drift_verdict_arrives_once_and_a_rerun_sends_none(
    run_dag, alerting, champion, settings
) -> None:
    run = run_dag("drift_alerts_churn", {"window_end": DRIFT_DAY.isoformat()})

    assert run.state == "success", run.task_states
    decision = _decision(settings, run, "drift")
    assert decision.action in {"retrain", "suppressed_cooldown"}, decision
    alert, email, _ = _one_per_channel(alerting, "drift", run.run_id)
    summary = run.xcoms["check_drift"]
    facts = alert["facts"]
    assert facts["drift_share"] == summary["drift_share"]
    assert facts["drifted_columns"] == summary["drifted_columns"]
    assert {"support_calls", "data_usage_gb"} <= set(facts["drifted_columns"])
    assert _outcome_line(decision) in alert["subject"]
    assert f"drift share {summary['drift_share']:.2f}" in email.get_content()
    assert {"Airflow run", "MLflow run", "report", "summary"} <= set(alert["links"])

    rerun = rerun_dag_run("drift_alerts_churn", run.run_id)

    assert rerun.state == "success", rerun.task_states
    assert _counts(alerting, "drift", run.run_id) == (1, 1, 1)


def test_a_decay_arrives_once_with_realised_against_holdout(
    run_dag, alerting, champion, settings
) -> None:
    run = run_dag("performance_alerts_churn", {"window_end": SCORED_DAY.isoformat()})

    assert run.state == "success", run.task_states
    decision = _decision(settings, run, "decay")
    assert decision.action in {"retrain", "suppressed_cooldown"}, decision
    alert, email, _ = _one_per_channel(alerting, "decay", run.run_id)
    summary = run.xcoms["evaluate"]
    facts = alert["facts"]
    assert (facts["realised"], facts["baseline"]) == (summary["value"], summary["baseline"])
    assert facts["realised"] < facts["baseline"] * 0.97
    assert (
        f"realised accuracy {summary['value']:.4f} vs holdout {summary['baseline']:.4f}"
        in email.get_content()
    )
    assert _outcome_line(decision) in alert["subject"]
    assert facts["cooldown_until"] == (
        decision.cooldown_until.isoformat() if decision.cooldown_until else None
    )


# ---- rollback, and a dead SMTP server ----------------------------------------------------------


@pytest.fixture(scope="module")
def rollback_versions(stack: Any, settings: Any) -> tuple[str, str]:
    """Two versions of alerts_rollback; the newer one is champion."""
    from trainyard.governance.aliases import move
    from trainyard.governance.audit import Cause

    old, new = register_tiny_model("alerts_rollback"), register_tiny_model("alerts_rollback")
    for version in (old, new):
        cause = Cause(actor="tester", reason="setup", dag_id="tests", run_id=f"setup-{version}")
        move(settings, "alerts_rollback", "promote", version, cause)
    return old, new


def _rollback_to_the_other(run_dag, versions: tuple[str, str], reason: str) -> tuple[Any, str]:
    old, new = versions
    target = old if champion_of("alerts_rollback").version == new else new
    run = run_dag("rollback_alerts_rollback", {"to_version": target, "reason": reason})
    return run, target


def test_a_rollback_arrives_once_saying_who_why_and_from_to(
    run_dag, alerting, rollback_versions
) -> None:
    before = champion_of("alerts_rollback").version
    run, target = _rollback_to_the_other(run_dag, rollback_versions, "test: v2 misbehaves")

    assert run.state == "success", run.task_states
    alert, _, _ = _one_per_channel(alerting, "rollback", run.run_id)
    facts = alert["facts"]
    assert (facts["from_version"], facts["to_version"]) == (before, target)
    assert (facts["actor"], facts["reason"]) == ("dag_test", "test: v2 misbehaves")


def test_a_dead_smtp_server_does_not_fail_the_run_and_is_logged(
    run_dag, alerting, rollback_versions, monkeypatch
) -> None:
    monkeypatch.setenv("TRAINYARD_ALERT_SMTP_PORT", str(alerting.closed_port))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    delivery = logging.getLogger("trainyard.alerts.delivery")
    delivery.addHandler(handler)
    emails_before = len(alerting.emails)
    try:
        run, target = _rollback_to_the_other(run_dag, rollback_versions, "test: dead SMTP")
    finally:
        delivery.removeHandler(handler)

    assert run.state == "success", run.task_states
    assert champion_of("alerts_rollback").version == target
    (alert,) = alerting.alerts("rollback", run.run_id)
    assert alert["facts"]["reason"] == "test: dead SMTP"
    assert len(alerting.emails) == emails_before
    failed = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert any(f"alert {alert['event_id']} via smtp FAILED" in line for line in failed), failed
