"""The link and Models-page logic behind the Airflow plugin (no Airflow, no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from trainyard.governance.audit import AuditEvent, Cause
from trainyard.ui.links import (
    LinkKind,
    link_url,
    mlflow_run_ref,
    model_version_ref,
    references_of,
    task_required_action_ref,
)
from trainyard.ui.models_page import (
    PipelineRow,
    RunSummary,
    champion_from_version,
    drift_outcome,
    pending_from_version,
    realised_from_run,
    render_history_page,
    render_models_page,
    training_outcome,
    with_audit,
)

MLFLOW = "http://mlflow.example:5000/"


def _presign(uri: str) -> str:
    return "https://s3.example/" + uri.removeprefix("s3://") + "?X-Amz-Expires=900"


def test_mlflow_references_open_the_mlflow_ui() -> None:
    run = link_url(mlflow_run_ref("3", "abc"), mlflow_ui_url=MLFLOW, presign=_presign)
    version = link_url(
        model_version_ref("churn model", "7"), mlflow_ui_url=MLFLOW, presign=_presign
    )
    assert run == "http://mlflow.example:5000/#/experiments/3/runs/abc"
    assert version == "http://mlflow.example:5000/#/models/churn%20model/versions/7"


def test_s3_references_are_presigned_and_nothing_recorded_is_no_link() -> None:
    uri = "s3://trainyard/drift/churn/report.html"
    assert link_url(uri, mlflow_ui_url=MLFLOW, presign=_presign) == (
        "https://s3.example/trainyard/drift/churn/report.html?X-Amz-Expires=900"
    )
    assert link_url(None, mlflow_ui_url=MLFLOW, presign=_presign) is None
    assert link_url("", mlflow_ui_url=MLFLOW, presign=_presign) is None


def test_only_known_kinds_with_text_references_are_read_from_xcom() -> None:
    recorded = {"Data Docs": "s3://b/k.html", "Unknown": "x", "MLflow run": 3}
    assert references_of(recorded) == {LinkKind.DATA_DOCS.value: "s3://b/k.html"}
    assert references_of("not a dict") == {}
    assert references_of(None) == {}


def test_champion_reads_its_lineage_tags() -> None:
    version = SimpleNamespace(
        version="4",
        creation_timestamp=1_763_856_000_000,
        run_id="run-from-version",
        tags={
            "mlflow_run_id": "run-1",
            "airflow_run_id": "manual__x",
            "trigger_reason": "demo",
            "metric.roc_auc": "0.81",
            "metric.accuracy": "0.75",
            "gate_decision": "passed",
        },
    )
    champion = champion_from_version(version, experiment_id="2")
    assert champion.version == "4"
    assert champion.since == datetime(2025, 11, 23, tzinfo=UTC)  # registered, no audit event
    assert (champion.mlflow_run_id, champion.airflow_run_id, champion.reason) == (
        "run-1",
        "manual__x",
        "demo",
    )
    assert champion.metrics == {"accuracy": 0.75, "roc_auc": 0.81}


def test_training_outcome_names_the_result_or_the_failed_step() -> None:
    assert training_outcome("success", [], {"status": "registered", "version": "5"}) == (
        "registered v5"
    )
    assert training_outcome("success", [], {"status": "rejected_by_gate"}) == (
        "rejected by the gate"
    )
    assert training_outcome("failed", ["validate"], None) == "failed at validation"
    assert training_outcome("running", [], None) == "running"


def test_drift_outcome_prefers_a_data_quality_failure_over_anything_else() -> None:
    assert drift_outcome("failed", ["validate"], None) == "data-quality failure"
    assert drift_outcome("success", [], {"verdict": "drift", "message": "2 of 8 drifted"}) == (
        "2 of 8 drifted"
    )
    assert drift_outcome("failed", ["check_drift"], None) == "failed at the drift check"


def test_page_shows_champion_runs_and_a_retrain_form_and_escapes_everything() -> None:
    started = datetime(2026, 11, 23, 1, 2, tzinfo=UTC)
    row = PipelineRow(
        name="churn",
        model_name="churn",
        training_dag_id="train_churn",
        champion=champion_from_version(
            SimpleNamespace(
                version="2",
                creation_timestamp=1_763_856_000_000,
                run_id="r",
                tags={"trigger_reason": "<script>alert(1)</script>", "metric.f1": "0.5"},
            ),
            experiment_id="1",
        ),
        last_training=RunSummary(
            "train_churn", "manual__1", "success", started, "label fix", "registered v2"
        ),
        last_drift=None,
    )
    html = render_models_page(
        [row], mlflow_ui_url="http://m", airflow_url="http://a", notice="triggered"
    )
    assert "churn v2" in html and "f1 0.5000" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert 'action="/trainyard/models/churn/retrain"' in html
    assert "reason: label fix" in html and "registered v2" in html
    assert 'href="http://a/dags/train_churn/runs/manual__1"' in html
    assert "never run" in html  # no drift run yet
    assert 'role="status">triggered<' in html


def test_page_without_a_champion_says_so() -> None:
    row = PipelineRow("iris", "iris", "train_iris", None, None, None)
    html = render_models_page([row], mlflow_ui_url="http://m", airflow_url="http://a")
    assert "no champion" in html


def _event(action: str, at: datetime, to: str, champion: str | None, actor: str, reason: str):
    return AuditEvent(
        event_id=f"{action}-{to}",
        model_name="churn",
        action=action,
        at=at,
        from_version=None,
        to_version=to,
        cause=Cause(actor=actor, reason=reason, dag_id="rollback_churn", run_id=f"run-{to}"),
        aliases_set={"champion": champion} if champion else {"challenger": to},
    )


def test_the_audit_trail_says_since_when_who_and_why_a_version_is_champion() -> None:
    registered = champion_from_version(
        SimpleNamespace(version="2", creation_timestamp=0, run_id="r", tags={}), "1"
    )
    events = [
        _event("promote", datetime(2026, 11, 1, tzinfo=UTC), "2", "2", "schedule", "nightly"),
        _event("promote", datetime(2026, 11, 2, tzinfo=UTC), "3", "3", "schedule", "nightly"),
        _event("submit", datetime(2026, 11, 3, tzinfo=UTC), "4", None, "schedule", "nightly"),
        _event("rollback", datetime(2026, 11, 4, tzinfo=UTC), "2", "2", "alice", "v3 broke"),
    ]
    champion = with_audit(registered, events)
    assert champion.since == datetime(2026, 11, 4, tzinfo=UTC)
    assert (champion.actor, champion.reason, champion.airflow_run_id) == (
        "alice",
        "v3 broke",
        "run-2",
    )
    assert with_audit(registered, events[1:3]) == registered  # v2 never made champion there


def test_history_page_lists_every_move_newest_first() -> None:
    events = [
        _event("promote", datetime(2026, 11, 1, tzinfo=UTC), "2", "2", "schedule", "nightly"),
        _event("rollback", datetime(2026, 11, 4, tzinfo=UTC), "1", "1", "alice", "<v2 broke>"),
    ]
    html = render_history_page("churn", "churn", events, airflow_url="http://a")
    assert html.index("rollback") < html.index("promote")
    assert "&lt;v2 broke&gt;" in html and "alice" in html
    assert 'href="http://a/dags/rollback_churn/runs/run-1"' in html
    assert "No alias move recorded yet." in render_history_page(
        "iris", "iris", [], airflow_url="http://a"
    )


def test_every_row_offers_retrain_and_rollback_with_a_required_reason() -> None:
    row = PipelineRow("churn", "churn", "train_churn", None, None, None)
    html = render_models_page([row], mlflow_ui_url="http://m", airflow_url="http://a")
    assert 'action="/trainyard/models/churn/rollback"' in html
    assert html.count('name="reason" required') == 2
    assert 'href="/trainyard/models/churn"' in html


def test_airflow_references_open_the_airflow_ui_itself() -> None:
    ref = task_required_action_ref("train_churn", "manual__2026-11-23T01:00:00+00:00", "approval")
    assert ref == (
        "/dags/train_churn/runs/manual__2026-11-23T01%3A00%3A00%2B00%3A00/tasks/approval"
        "/required_actions"
    )
    assert link_url(ref, mlflow_ui_url=MLFLOW, presign=_presign) == ref  # same site
    assert link_url(
        ref, mlflow_ui_url=MLFLOW, presign=_presign, airflow_url="https://airflow.example/"
    ) == ("https://airflow.example" + ref)


def test_scoring_performance_and_approval_links_are_read_from_xcom() -> None:
    recorded = {
        "Scoring report": "s3://trainyard/scoring/churn/runs/r.json",
        "Performance report": "s3://trainyard/performance/churn/v1/end-x/in-y/summary.json",
        "Required action": "/dags/d/runs/r/tasks/approval/required_actions",
    }
    assert references_of(recorded) == recorded
    assert {kind.value for kind in LinkKind} >= set(recorded)


def _challenger(tags: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(version="5", creation_timestamp=1_763_856_000_000, tags=tags)


def test_pending_approval_links_to_the_required_action_of_its_run() -> None:
    pending = pending_from_version(
        _challenger(
            {"airflow_dag_id": "train_churn", "airflow_run_id": "manual__1", "metric.f1": "0.6"}
        )
    )
    assert (pending.version, pending.metrics) == ("5", {"f1": 0.6})
    assert pending.since == datetime(2025, 11, 23, tzinfo=UTC)
    assert pending.required_action_ref == task_required_action_ref(
        "train_churn", "manual__1", "approval"
    )
    # Without the run's identity: the list of every pending action.
    assert pending_from_version(_challenger({})).required_action_ref == (
        "/required_actions?response_received=false"
    )


def _performance_run() -> SimpleNamespace:
    return SimpleNamespace(
        info=SimpleNamespace(start_time=1_763_859_600_000, experiment_id="7", run_id="mon-1"),
        data=SimpleNamespace(
            tags={"verdict": "no_decay", "model_version": "4", "window_end": "2026-11-15"},
            metrics={"realised_roc_auc": 0.79, "realised_f1": 0.55, "labelled_rows": 900.0},
        ),
    )


def test_realised_metrics_are_the_monitors_realised_ones_only() -> None:
    realised = realised_from_run(_performance_run())
    assert realised.metrics == {"f1": 0.55, "roc_auc": 0.79}
    assert (realised.model_version, realised.verdict, realised.window_end) == (
        "4",
        "no_decay",
        "2026-11-15",
    )
    assert realised.checked_at == datetime(2025, 11, 23, 1, tzinfo=UTC)
    assert (realised.experiment_id, realised.mlflow_run_id) == ("7", "mon-1")


def test_page_shows_realised_metrics_and_a_pending_approval() -> None:
    row = PipelineRow(
        "churn",
        "churn",
        "train_churn",
        None,
        None,
        None,
        pending_approval=pending_from_version(
            _challenger({"airflow_dag_id": "train_churn", "airflow_run_id": "manual__1"})
        ),
        realised=realised_from_run(_performance_run()),
    )
    html = render_models_page([row], mlflow_ui_url="http://m", airflow_url="http://a")
    assert "<th>latest realised metrics</th><th>pending approval</th>" in html
    assert "f1 0.5500, roc_auc 0.7900" in html and "v4 · no decay · window to 2026-11-15" in html
    assert 'href="http://m/#/experiments/7/runs/mon-1"' in html
    assert (
        'href="http://a/dags/train_churn/runs/manual__1/tasks/approval/required_actions">'
        "v5 waits for approval</a>"
    ) in html
    bare = render_models_page(
        [PipelineRow("iris", "iris", "train_iris", None, None, None)],
        mlflow_ui_url="http://m",
        airflow_url="http://a",
    )
    assert '<td class="realised">-</td>' in bare and '<td class="pending">none</td>' in bare
