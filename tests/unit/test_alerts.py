"""Alerts' pure parts: what each event says, its identity, the payloads, the settings.

Delivery through real SMTP and HTTP servers, and the one-message rule on S3, are tested end to
end in tests/e2e/test_alerts.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from trainyard.alerts import messages
from trainyard.alerts.delivery import deliver
from trainyard.alerts.notifiers import _validation_report
from trainyard.core.settings import AlertSettings
from trainyard.data.validation import ExpectationOutcome, ValidationFailed, ValidationReport
from trainyard.drift.policy import RetrainDecision
from trainyard.governance.audit import Cause, new_event
from trainyard.training.gate import GateCheck, GateDecision

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
LINKS = messages.airflow_links("http://airflow:8080/", "train_churn", "manual__2026-03-02")


def _decision(action: str, signal: str = "drift", **fields: object) -> RetrainDecision:
    return RetrainDecision(
        signal=signal,
        pipeline="churn",
        action=action,
        retrain=action == "retrain",
        message=f"{signal}: {action}",
        decided_at=T0,
        monitor_run_id="scheduled__2026-03-02T06:00:00+00:00",
        training_dag_id="train_churn",
        **fields,
    )


DRIFT_SUMMARY = {
    "pipeline": "churn",
    "verdict": "drift",
    "drift_share": 0.3,
    "drift_share_threshold": 0.2,
    "drifted_columns": ["support_calls", "data_usage_gb", "tenure_months"],
    "column_count": 10,
    "current_window_start": "2026-03-01",
    "current_window_end": "2026-03-01",
    "current_rows": 1000,
    "reference_model": "churn v2",
    "report_uri": "s3://trainyard/drift/churn/x/report.html",
}
DECAY_SUMMARY = {
    "pipeline": "churn",
    "verdict": "decay",
    "message": "decay: accuracy 0.6600, 0.6512 in 2 consecutive window(s)",
    "metric": "accuracy",
    "value": 0.6512,
    "baseline": 0.7893,
    "window_start": "2026-02-20",
    "window_end": "2026-02-21",
    "model": "churn v2",
}


def test_links_name_the_run_and_task_in_the_airflow_ui() -> None:
    links = messages.airflow_links("http://airflow:8080/", "train_churn", "manual__a+b:c", "gate")
    assert links == {
        "Airflow run": "http://airflow:8080/dags/train_churn/runs/manual__a%2Bb%3Ac",
        "Airflow task": "http://airflow:8080/dags/train_churn/runs/manual__a%2Bb%3Ac/tasks/gate",
    }
    assert messages.required_actions_url("http://a:8080/") == "http://a:8080/required_actions"


def test_a_validation_failure_lists_every_failed_expectation() -> None:
    alert = messages.task_failed(
        "churn",
        "train_churn",
        "manual__1",
        "validate",
        1,
        "data validation failed: 2 of 30 expectations ...",
        ["tenure_months: expect_column_values_to_be_between: 40 unexpected", "region: not null"],
        LINKS,
    )
    assert alert.kind == "task_failed"
    assert "validate failed (data validation failed)" in alert.subject
    assert "Failed expectations (2):" in alert.text
    assert "  tenure_months: expect_column_values_to_be_between: 40 unexpected" in alert.text
    assert LINKS["Airflow run"] in alert.text
    assert alert.facts["failed_expectations"][1] == "region: not null"


def test_any_other_failure_carries_its_error_and_tries() -> None:
    alert = messages.task_failed(
        "churn", "train_churn", "r1", "train", 3, "S3 unavailable: timeout\nmore", [], LINKS
    )
    assert "train failed (S3 unavailable: timeout)" in alert.subject
    assert "failed after 3 attempt(s)" in alert.text
    assert "Error:\n  S3 unavailable: timeout\n  more" in alert.text


def test_the_identity_is_the_event_not_the_attempt() -> None:
    first = messages.task_failed("churn", "d", "r1", "train", 1, "boom", [], {})
    retried = messages.task_failed("churn", "d", "r1", "train", 3, "other words", [], {})
    other_run = messages.task_failed("churn", "d", "r2", "train", 1, "boom", [], {})
    assert first.event_id == retried.event_id != other_run.event_id
    assert len(first.event_id) == 20


def test_a_gate_rejection_names_every_check_and_both_sides_metrics() -> None:
    decision = GateDecision(
        passed=False,
        challenger={"roc_auc": 0.5, "log_loss": 0.69},
        champion={"roc_auc": 0.83},
        champion_version="3",
        checks=[
            GateCheck(rule="floor", metric="roc_auc", value=0.5, bound=0.75, passed=False),
            GateCheck(rule="floor", metric="log_loss", value=0.69, bound=0.6, passed=False),
        ],
    )
    alert = messages.gate_rejected("churn", "churn", "train_churn", "r1", decision, LINKS)
    assert alert.subject == (
        "[trainyard] churn: challenger rejected by the gate (2 failed check(s); champion v3 stays)"
    )
    assert "[FAIL] floor: roc_auc=0.5000 vs bound 0.7500" in alert.text
    assert "roc_auc: challenger 0.5000, champion 0.8300" in alert.text
    assert "log_loss: challenger 0.6900, champion -" in alert.text
    assert alert.facts["champion"] == {"roc_auc": 0.83}
    assert alert.identity == "train_churn/r1/gate_rejected"


def test_a_drift_retrain_names_the_share_columns_and_training_run() -> None:
    decision = _decision("retrain", training_run_id="retrain__20260302T060000Z")
    alert = messages.monitor_verdict(decision, DRIFT_SUMMARY, LINKS)
    assert alert is not None and alert.kind == "drift"
    assert "retrain triggered: train_churn run retrain__20260302T060000Z" in alert.subject
    assert "drift share 0.30 >= 0.2 (3 of 10 columns)" in alert.text
    assert "support_calls, data_usage_gb, tenure_months" in alert.text
    assert alert.facts["drift_share"] == 0.3 and alert.facts["retrain"] is True


def test_a_suppressed_retrain_says_when_the_cooldown_ends() -> None:
    until = T0 + timedelta(hours=5)
    alert = messages.monitor_verdict(
        _decision("suppressed_cooldown", cooldown_until=until), DRIFT_SUMMARY, {}
    )
    assert f"retrain suppressed: cooldown until {until.isoformat()}" in alert.subject
    assert alert.facts["cooldown_until"] == until.isoformat()
    busy = messages.monitor_verdict(
        _decision("suppressed_active", active_training_runs=1), DRIFT_SUMMARY, {}
    )
    assert "1 run(s) of train_churn already queued or running" in busy.subject


def test_a_decay_names_realised_against_holdout_and_the_drop() -> None:
    alert = messages.monitor_verdict(
        _decision("retrain", "decay", training_run_id="drift__x"), DECAY_SUMMARY, LINKS
    )
    assert alert.kind == "decay"
    assert "accuracy decayed, retrain triggered" in alert.subject
    assert "realised accuracy 0.6512 vs holdout 0.7893 (-17.50%) of churn v2" in alert.text
    assert alert.facts["relative_drop"] == pytest.approx(0.175, abs=1e-3)
    assert alert.identity.startswith("churn/decay/")


@pytest.mark.parametrize(
    "action", ["no_drift", "insufficient_data", "no_champion", "data_quality_failure"]
)
def test_no_verdict_no_alert(action: str) -> None:
    assert messages.monitor_verdict(_decision(action), DRIFT_SUMMARY, {}) is None


def test_an_approval_waiting_carries_the_required_actions_link() -> None:
    alert = messages.approval_waiting(
        "churn",
        "train_churn",
        "r1",
        "Promote churn v4 to champion? (champion now: v3)",
        "**churn v4** passed the gate\n| roc_auc | 0.8400 | 0.8300 |",
        "http://airflow:8080/required_actions",
        LINKS,
    )
    assert alert.subject.endswith("Promote churn v4 to champion? (champion now: v3)")
    assert "Required Actions: http://airflow:8080/required_actions" in alert.text
    assert "| roc_auc | 0.8400 | 0.8300 |" in alert.text
    assert alert.links["Required Actions"] == "http://airflow:8080/required_actions"


def test_a_rollback_says_who_why_and_from_to() -> None:
    cause = Cause(actor="alice", reason="v5 mislabels", dag_id="rollback_churn", run_id="m1")
    event = new_event(
        "churn", "rollback", cause, from_version="5", to_version="4", aliases_set={}, at=T0
    )
    alert = messages.rolled_back("churn", event, LINKS)
    assert alert.subject == "[trainyard] churn: champion rolled back v5 → v4 by alice"
    assert "Reason:\n  v5 mislabels" in alert.text
    assert alert.facts["from_version"] == "5" and alert.facts["to_version"] == "4"
    assert alert.identity == f"churn/rollback/{event.event_id}"


def test_payloads() -> None:
    alert = messages.task_failed("churn", "d", "r1", "train", 1, "boom", [], LINKS)
    assert messages.slack_payload(alert)["text"].startswith(f"*{alert.subject}*\n")
    body = messages.webhook_payload(alert)
    assert body["event_id"] == alert.event_id
    assert body["kind"] == "task_failed" and body["links"] == LINKS


def test_the_failure_behind_airflows_exception_is_found() -> None:
    report = ValidationReport(
        success=False,
        suite="churn",
        suite_sha256="a" * 64,
        snapshot_sha256="b" * 64,
        evaluated=3,
        failures=[ExpectationOutcome(expectation="expect_x", column="c", severity="critical")],
        warnings=[],
        result_uri="s3://t/r.json",
        data_docs_uri=None,
    )
    try:
        try:
            raise ValidationFailed(report)
        except ValidationFailed as error:
            raise RuntimeError("wrapped") from error
    except RuntimeError as outer:
        assert _validation_report(outer) == report
    assert _validation_report(RuntimeError("no cause")) is None


def test_settings_from_the_environment() -> None:
    assert AlertSettings.from_env({}).channels == []
    settings = AlertSettings.from_env(
        {
            "TRAINYARD_ALERT_SMTP_HOST": "mail",
            "TRAINYARD_ALERT_SMTP_PORT": "2525",
            "TRAINYARD_ALERT_EMAIL_TO": "a@x, b@x",
            "TRAINYARD_ALERT_SLACK_WEBHOOK_URL": "http://slack/hook",
            "TRAINYARD_ALERT_WEBHOOK_URL": "http://json/hook",
            "TRAINYARD_AIRFLOW_UI_URL": "http://airflow:8080/",
        }
    )
    assert settings.channels == ["smtp", "slack", "webhook"]
    assert (settings.smtp_port, settings.email_to) == (2525, ("a@x", "b@x"))
    assert settings.airflow_ui_url == "http://airflow:8080"
    assert (
        AlertSettings.from_env({"AIRFLOW__API__BASE_URL": "http://ui"}).airflow_ui_url
        == "http://ui"
    )
    with pytest.raises(ValueError, match="without TRAINYARD_ALERT_EMAIL_TO"):
        AlertSettings.from_env({"TRAINYARD_ALERT_SMTP_HOST": "mail"})
    with pytest.raises(ValueError, match="TRAINYARD_ALERT_TIMEOUT='soon' is not a number"):
        AlertSettings.from_env({"TRAINYARD_ALERT_TIMEOUT": "soon"})


def test_without_channels_an_alert_is_only_logged(caplog) -> None:
    alert = messages.task_failed("churn", "d", "r1", "train", 1, "boom", [], LINKS)
    with caplog.at_level(logging.WARNING, logger="trainyard.alerts.delivery"):
        assert deliver(alert, {}) == {"log": "logged"}
        assert deliver(alert, {"TRAINYARD_ALERT_SMTP_HOST": "mail"}) == {"log": "logged"}
    assert f"ALERT {alert.subject}" in caplog.text
    assert "alert settings are invalid" in caplog.text
    assert deliver(None, {}) == {}
