"""The link and Models-page logic behind the Airflow plugin (no Airflow, no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from trainyard.ui.links import (
    LinkKind,
    link_url,
    mlflow_run_ref,
    model_version_ref,
    references_of,
)
from trainyard.ui.models_page import (
    PipelineRow,
    RunSummary,
    champion_from_version,
    drift_outcome,
    render_models_page,
    training_outcome,
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
    assert champion.registered_at == datetime(2025, 11, 23, tzinfo=UTC)
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
