"""The drift check's pure parts and the storm-protection rules (no services)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO
from trainyard.core.spec import load_spec, parse_spec
from trainyard.drift import evidently, policy, steps
from trainyard.drift.policy import (
    RetrainDecision,
    RetrainRecord,
    cooldown_slot,
    decide,
    training_run_id,
)

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


def _spec(**drift_settings: Any):
    import yaml

    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["drift"].update(drift_settings)
    return parse_spec(data, Path("churn.yaml"))


# ---- parsing Evidently's snapshot ---------------------------------------------------------------


def _report(scores: dict[str, tuple[str, float, float, str]], count: int, share: float) -> dict:
    """A snapshot.dict() shaped like Evidently 0.7.23's (column -> method, score, thr, status)."""
    metrics: list[dict[str, Any]] = [
        {
            "value": {"count": float(count), "share": share},
            "config": {"type": "evidently:metric_v2:DriftedColumnsCount", "columns": list(scores)},
        }
    ]
    tests: list[dict[str, Any]] = [
        {"status": "FAIL", "metric_config": {"params": {"type": "evidently:metric_v2:Drifted"}}}
    ]
    for column, (method, score, threshold, status) in scores.items():
        config = {
            "type": "evidently:metric_v2:ValueDrift",
            "column": column,
            "method": method,
            "threshold": threshold,
        }
        metrics.append({"value": score, "config": config})
        tests.append({"status": status, "metric_config": {"params": config}})
    return {"metrics": metrics, "tests": tests}


def test_parse_snapshot_reads_each_column_and_the_share() -> None:
    report = _report(
        {
            "a": ("Wasserstein distance (normed)", 1.2, 0.1, "FAIL"),
            "b": ("K-S p_value", 0.4, 0.05, "SUCCESS"),
            "c": ("chi-square p_value", 0.001, 0.05, "TestStatus.FAIL"),
            "d": ("Jensen-Shannon distance", 0.02, 0.1, "TestStatus.SUCCESS"),
        },
        count=2,
        share=0.5,
    )

    result = evidently.parse_snapshot(report, drift_share=0.5)

    assert result.verdict == "drift"  # share >= drift_share
    assert result.drifted_columns == ["a", "c"]
    assert result.share == 0.5 and result.drifted_count == 2
    by_name = {c.column: c for c in result.columns}
    assert by_name["b"].method == "K-S p_value"
    assert (by_name["c"].score, by_name["c"].threshold) == (0.001, 0.05)


def test_parse_snapshot_below_the_share_is_no_drift() -> None:
    report = _report(
        {"a": ("Wasserstein distance (normed)", 1.2, 0.1, "FAIL"), "b": ("x", 0.0, 0.1, "SUCCESS")},
        count=1,
        share=0.5,
    )
    assert evidently.parse_snapshot(report, drift_share=0.6).verdict == "no_drift"


def test_parse_snapshot_refuses_reports_without_tests_or_disagreeing() -> None:
    report = _report({"a": ("x", 1.0, 0.1, "FAIL")}, count=1, share=1.0)
    without_tests = {"metrics": report["metrics"], "tests": []}
    with pytest.raises(ValueError, match="include_tests=True"):
        evidently.parse_snapshot(without_tests, 0.5)
    with pytest.raises(ValueError, match="counts 3"):
        evidently.parse_snapshot(_report({"a": ("x", 1.0, 0.1, "FAIL")}, count=3, share=1.0), 0.5)
    with pytest.raises(ValueError, match="one DriftedColumnsCount"):
        evidently.parse_snapshot({"metrics": [], "tests": []}, 0.5)


def test_real_evidently_names_exactly_the_shifted_columns() -> None:
    """Guards the parser against Evidently's actual output (imports Evidently: ~10 s)."""
    from trainyard_dev.churn import Knobs, generate_day

    reference = generate_day(date(2026, 2, 1), 3000)
    stable = generate_day(date(2026, 2, 2), 1000)
    shifted = generate_day(
        date(2026, 2, 2), 1000, Knobs(covariate_drift={"support_calls": 1.0, "region": 0.8})
    )

    calm, _ = evidently.run_evidently(CHURN, reference, stable)
    moved, snapshot = evidently.run_evidently(CHURN, reference, shifted)

    assert calm.verdict == "no_drift" and calm.drifted_columns == []
    assert set(moved.drifted_columns) == {"support_calls", "region"}
    assert moved.share == pytest.approx(0.2) and moved.verdict == "no_drift"  # churn: 0.3
    assert len(moved.columns) == 10
    assert hasattr(snapshot, "save_html")


def _refs(rows_reference: int, rows_current: int) -> tuple[steps.ReferenceRef, Any]:
    from trainyard.data.snapshots import SnapshotRef

    reference = steps.ReferenceRef(
        model_name="churn",
        model_version="2",
        snapshot_uri="s3://trainyard/snapshots/churn/ref.parquet",
        snapshot_sha256="r" * 64,
        window_start=date(2026, 1, 5),
        window_end=date(2026, 2, 1),
    )
    current = SnapshotRef(
        uri="s3://trainyard/snapshots/churn/cur.parquet",
        sha256="c" * 64,
        rows=rows_current,
        window_start=date(2026, 2, 2),
        window_end=date(2026, 2, 2),
        sources=1,
    )
    return reference, current


def test_compare_summarises_a_real_check_in_memory() -> None:
    """The pure core of check_drift: Evidently on frames, no storage (imports Evidently)."""
    from trainyard_dev.churn import Knobs, generate_day

    reference_frame = generate_day(date(2026, 2, 1), 3000)
    current_frame = generate_day(
        date(2026, 2, 2), 1000, Knobs(covariate_drift={"tenure_months": 1.0, "support_calls": 1.0})
    )
    reference, current = _refs(3000, 1000)

    summary, report = steps.compare(
        CHURN, reference, current, reference_frame, current_frame, "s3://x/summary.json", "s3://x/r"
    )

    assert summary.verdict == "drift"  # tenure_months, total_charges (follows it), support_calls
    assert {"tenure_months", "support_calls"} <= set(summary.drifted_columns)
    assert summary.reference_model == "churn v2"
    assert (summary.reference.rows, summary.current.rows) == (3000, 1000)
    assert summary.report_uri == "s3://x/r" and hasattr(report, "save_html")
    assert summary.settings_sha256 == evidently.settings_sha256(
        evidently.check_settings(CHURN), evidently.evidently_version()
    )


def test_compare_with_too_few_rows_gives_no_verdict_and_no_report() -> None:
    from trainyard_dev.churn import generate_day

    reference, current = _refs(3000, 120)
    summary, report = steps.compare(
        CHURN,
        reference,
        current,
        generate_day(date(2026, 2, 1), 3000),
        generate_day(date(2026, 2, 2), 120),
        "s3://x/summary.json",
        "s3://x/r",
    )
    assert summary.verdict == "insufficient_data" and report is None
    assert summary.report_uri is None and summary.columns == []
    assert "current has 120 rows" in summary.message


def test_monitoring_tags_and_metrics_of_a_check() -> None:
    from trainyard.core.lineage import RunContext

    reference, current = _refs(3000, 1000)
    summary = steps.DriftSummary(
        pipeline="churn",
        verdict="drift",
        message="m",
        drift_share=0.4,
        drift_share_threshold=0.3,
        drifted_count=2,
        column_count=5,
        columns=[
            evidently.ColumnDrift(
                column="a", method="ks", score=0.01, threshold=0.05, drifted=True
            ),
            evidently.ColumnDrift(
                column="b", method="ks", score=0.5, threshold=0.05, drifted=False
            ),
        ],
        reference=steps.DataSide(
            snapshot_uri=reference.snapshot_uri,
            snapshot_sha256=reference.snapshot_sha256,
            rows=3000,
            compared_rows=3000,
        ),
        current=steps.DataSide(
            snapshot_uri=current.uri,
            snapshot_sha256=current.sha256,
            rows=1000,
            compared_rows=1000,
            window_start=current.window_start,
            window_end=current.window_end,
        ),
        reference_model="churn v2",
        min_rows=200,
        settings={},
        settings_sha256="s",
        evidently_version="0.7.23",
        summary_uri="s3://x/summary.json",
        report_uri="s3://x/report.html",
    )
    context = RunContext(dag_id="drift_churn", run_id="r1", trigger_reason="t", git_commit="g")

    tags = steps.monitoring_tags(CHURN, summary, context)
    metrics = steps.monitoring_metrics(summary)

    assert tags["airflow_run_id"] == "r1" and tags["drifted_columns"] == "a"
    assert tags["current_window"] == "2026-02-02..2026-02-02"
    assert metrics == {
        "drifted_columns": 2.0,
        "column_count": 5.0,
        "rows_current": 1000.0,
        "rows_reference": 3000.0,
        "dataset_drift": 1.0,
        "drift_share": 0.4,
        "score.a": 0.01,
        "score.b": 0.5,
    }


def test_the_spec_knows_exactly_evidentlys_drift_methods() -> None:
    """DRIFT_METHODS (light, for parse time) must match Evidently's own registry."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    from trainyard.core.spec import DRIFT_METHODS

    kinds = {"ColumnType.Numerical": "numeric", "ColumnType.Categorical": "categorical"}
    registered = {
        name: frozenset(kinds[str(kind)] for kind in by_kind if str(kind) in kinds)
        for name, by_kind in _registered_stat_tests.items()
    }
    assert {name: kinds for name, kinds in registered.items() if kinds} == DRIFT_METHODS


# ---- settings, sampling, row counts, windows ----------------------------------------------------


def test_preset_settings_follow_the_spec() -> None:
    assert evidently.preset_settings(CHURN) == {
        "columns": list(CHURN.schema_.features),
        "drift_share": 0.3,
    }
    spec = _spec(
        columns=["monthly_charges", "contract"],
        method="psi",
        threshold=0.2,
        per_column_method={"contract": "chisquare"},
        per_column_threshold={"monthly_charges": 0.3},
    )
    assert evidently.drift_columns(spec) == (["monthly_charges"], ["contract"])
    assert evidently.preset_settings(spec) == {
        "columns": ["monthly_charges", "contract"],
        "drift_share": 0.3,
        "method": "psi",
        "threshold": 0.2,
        "per_column_method": {"contract": "chisquare"},
        "per_column_threshold": {"monthly_charges": 0.3},
    }


def test_settings_hash_changes_with_settings_and_evidently_version() -> None:
    base = evidently.check_settings(CHURN)
    assert evidently.settings_sha256(base, "0.7.23") == evidently.settings_sha256(
        dict(base), "0.7.23"
    )
    assert evidently.settings_sha256(base, "0.7.23") != evidently.settings_sha256(base, "0.7.24")
    other = evidently.check_settings(_spec(min_rows=10))
    assert evidently.settings_sha256(base, "0.7.23") != evidently.settings_sha256(other, "0.7.23")


def test_sample_rows_is_capped_and_seeded() -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": range(1000)})
    assert evidently.sample_rows(frame, None, 0) is frame
    assert evidently.sample_rows(frame, 5000, 0) is frame
    sample = evidently.sample_rows(frame, 100, seed=3)
    assert len(sample) == 100 and sample["x"].is_unique
    assert sample.equals(evidently.sample_rows(frame, 100, seed=3))
    assert not sample.equals(evidently.sample_rows(frame, 100, seed=4))


def test_insufficient_rows_names_the_short_side() -> None:
    assert evidently.insufficient_rows(5000, 500, 500) is None
    message = evidently.insufficient_rows(5000, 150, 500)
    assert message.startswith("insufficient data: current has 150 rows")
    assert "reference" not in message
    assert "current has 1 rows and reference has 2 rows" in evidently.insufficient_rows(2, 1, 500)


def test_newest_window_takes_the_newest_partition_not_after_the_run_day() -> None:
    days = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 5)]
    window = steps.newest_window(days, run_day=date(2026, 3, 4), days=2)
    assert (window.start, window.end) == (date(2026, 3, 1), date(2026, 3, 2))
    explicit = steps.newest_window([], date(2026, 3, 4), 1, window_end=date(2026, 2, 1))
    assert (explicit.start, explicit.end) == (date(2026, 2, 1), date(2026, 2, 1))
    with pytest.raises(steps.NoCurrentDataError, match="no raw partition on or before"):
        steps.newest_window(days, run_day=date(2026, 2, 28), days=1)


def test_static_dataset_has_no_current_window() -> None:
    static = load_spec(REPO / "include" / "pipelines" / "breast_cancer.yaml")
    with pytest.raises(steps.NoCurrentDataError, match="static dataset"):
        steps.current_window(static, None, date(2026, 3, 1))  # type: ignore[arg-type]


def _sql_spec(query: str | None = None) -> Any:
    data = yaml.safe_load((REPO / "docs" / "examples" / "pipelines" / "churn_sql.yaml").read_text())
    if query is not None:
        data["source"]["query"] = query
    return parse_spec(data, Path("churn_sql.yaml"))


def test_a_windowed_query_checks_the_days_ending_on_the_run_day() -> None:
    spec = _sql_spec()
    run_day = date(2026, 3, 4)
    # No listing: the settings (S3) are never consulted for a query.
    default = steps.current_window(spec, None, run_day)  # type: ignore[arg-type]
    assert (default.start, default.end) == (run_day, run_day)
    three = steps.current_window(spec, None, run_day, window_days=3)  # type: ignore[arg-type]
    assert (three.start, three.end) == (date(2026, 3, 2), run_day)
    assert (three.start_moment, three.end_moment) == (datetime(2026, 3, 2), datetime(2026, 3, 5))
    earlier = steps.current_window(spec, None, run_day, window_end=date(2026, 2, 1))  # type: ignore[arg-type]
    assert (earlier.start, earlier.end) == (date(2026, 2, 1), date(2026, 2, 1))


def test_a_static_query_has_no_current_window() -> None:
    static = _sql_spec("SELECT * FROM customer_events ORDER BY customer_id")
    with pytest.raises(steps.NoCurrentDataError, match="static dataset"):
        steps.current_window(static, None, date(2026, 3, 1))  # type: ignore[arg-type]


# ---- storm protection ---------------------------------------------------------------------------


def _summary(verdict: str = "drift", **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": "churn",
        "verdict": verdict,
        "message": f"{verdict} message",
        "drift_share": 0.4,
        "drift_share_threshold": 0.3,
        "drifted_columns": ["monthly_charges", "contract"],
        "column_count": 5,
        "summary_uri": "s3://trainyard/drift/churn/x/summary.json",
        "report_uri": "s3://trainyard/drift/churn/x/report.html",
        "current_window_start": "2026-03-02",
        "current_window_end": "2026-03-02",
        "reference_model": "churn v3",
        **extra,
    }


def _last(at: datetime, drift_run: str = "scheduled__earlier") -> RetrainRecord:
    return RetrainRecord(
        training_dag_id="train_churn",
        training_run_id=training_run_id(at, 6, drift_run),
        requested_at=at,
        monitor_dag_id="drift_churn",
        monitor_run_id=drift_run,
        report_uri="s3://r",
        drifted_columns=["a"],
        drift_share=0.5,
    )


def _decide(summary=None, **kwargs: Any):
    arguments = {
        "now": NOW,
        "cooldown_hours": 6,
        "last_retrain": None,
        "active_training_runs": 0,
        "monitor_run_id": "scheduled__2026-03-02T10:00:00+00:00",
        "training_dag_id": "train_churn",
        **kwargs,
    }
    return decide(summary or _summary(), **arguments)


def test_no_drift_and_insufficient_data_never_retrain() -> None:
    calm = _decide(_summary("no_drift"))
    assert (calm.action, calm.retrain, calm.training_run_id) == ("no_drift", False, None)
    thin = _decide(_summary("insufficient_data"), force=True)
    assert (thin.action, thin.retrain) == ("insufficient_data", False)


def test_drift_without_history_retrains_with_reason_report_and_window() -> None:
    decision = _decide()

    assert decision.action == "retrain" and decision.retrain
    assert decision.training_run_id == "retrain__20260302T060000Z"
    conf = decision.conf
    assert conf["drift_report_uri"] == "s3://trainyard/drift/churn/x/report.html"
    assert conf["drifted_columns"] == ["monthly_charges", "contract"]
    assert conf["drift_share"] == 0.4
    assert conf["window_end"] == "2026-03-02"
    assert conf["reason"] == (
        "drift: monthly_charges, contract drifted (share 0.40 >= 0.3) in 2026-03-02..2026-03-02 "
        "vs churn v3; report s3://trainyard/drift/churn/x/report.html"
    )


def test_inside_the_cooldown_the_retrain_is_suppressed_and_says_until_when() -> None:
    last = _last(NOW - timedelta(hours=2))

    decision = _decide(last_retrain=last)

    assert (decision.action, decision.retrain) == ("suppressed_cooldown", False)
    until = NOW + timedelta(hours=4)
    assert decision.cooldown_until == until
    assert f"retrain suppressed: cooldown until {until.isoformat()}" in decision.message
    assert decision.conf is None


def test_after_the_cooldown_drift_retrains_again() -> None:
    decision = _decide(last_retrain=_last(NOW - timedelta(hours=6, seconds=1)))
    assert decision.action == "retrain" and decision.cooldown_until is None


def test_no_retrain_while_training_is_queued_or_running_even_when_forced() -> None:
    for force in (False, True):
        decision = _decide(active_training_runs=1, force=force)
        assert decision.action == "suppressed_active" and not decision.retrain
        assert "already queued or running" in decision.message


def test_cooldown_wins_over_active_in_the_message_and_force_skips_only_the_cooldown() -> None:
    last = _last(NOW - timedelta(hours=1))
    assert _decide(last_retrain=last, active_training_runs=1).action == "suppressed_cooldown"
    forced = _decide(last_retrain=last, force=True)
    assert forced.action == "retrain" and "forced past the cooldown" in forced.message
    assert forced.training_run_id.startswith("drift__forced__")


def test_a_retry_of_the_run_that_asked_asks_again_with_the_same_run_id() -> None:
    me = "manual__2026-03-02T10:30:00+00:00"
    last = _last(NOW, drift_run=me)
    decision = _decide(last_retrain=last, monitor_run_id=me)
    assert decision.retrain and decision.training_run_id == last.training_run_id


def test_zero_cooldown_never_suppresses_and_ids_are_per_drift_run() -> None:
    decision = _decide(cooldown_hours=0, last_retrain=_last(NOW), monitor_run_id="manual__x")
    assert decision.action == "retrain"
    assert decision.training_run_id == "drift__manual__x"


def test_racing_drift_runs_in_one_slot_ask_for_the_same_training_run() -> None:
    ids = {
        training_run_id(NOW.replace(hour=h, minute=m), 6, f"run{h}{m}")
        for h, m in ((6, 0), (8, 15), (11, 59))
    }
    assert ids == {"retrain__20260302T060000Z"}
    assert training_run_id(NOW.replace(hour=12), 6, "r") == "retrain__20260302T120000Z"
    # The performance monitor asks for the same run in the same slot: one retrain for both.
    assert training_run_id(NOW, 6, "r", signal="decay") == "retrain__20260302T060000Z"
    assert cooldown_slot(datetime(2026, 3, 2, 1, tzinfo=UTC), 0.5) == datetime(
        2026, 3, 2, 1, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        cooldown_slot(NOW, 0)


def test_run_ids_are_valid_airflow_run_ids() -> None:
    import re

    pattern = re.compile(r"^[A-Za-z0-9_.~:+-]+$")  # Airflow's default allowed_run_id_pattern
    assert pattern.match(training_run_id(NOW, 6, "x"))
    assert pattern.match(training_run_id(NOW, 6, "manual__2026-03-02T10:30:00.1+00:00", True))


def test_only_a_retrain_decision_becomes_a_ledger_record() -> None:
    record = policy.record_from(_decide(), "drift_churn")
    assert record.training_run_id == "retrain__20260302T060000Z"
    assert record.requested_at == NOW and record.monitor_dag_id == "drift_churn"
    assert record.drifted_columns == ["monthly_charges", "contract"]
    with pytest.raises(ValueError, match="only a decision to retrain"):
        policy.record_from(_decide(_summary("no_drift")), "drift_churn")


def test_ledger_records_and_decisions_stored_under_the_old_field_names_still_read() -> None:
    """Before both monitors shared it, the ledger named the monitor run ``drift_*``."""
    stored = _last(NOW - timedelta(hours=1), "scheduled__perf").model_dump(mode="json")
    stored["drift_dag_id"] = stored.pop("monitor_dag_id")
    stored["drift_run_id"] = stored.pop("monitor_run_id")

    old = RetrainRecord.model_validate_json(json.dumps(stored))

    assert (old.monitor_dag_id, old.monitor_run_id) == ("drift_churn", "scheduled__perf")
    assert _decide(last_retrain=old).action == "suppressed_cooldown"
    retry = _decide(last_retrain=old, monitor_run_id="scheduled__perf")
    assert retry.retrain and retry.training_run_id == old.training_run_id
    written = json.loads(old.model_dump_json())
    assert written["monitor_run_id"] == "scheduled__perf" and "drift_run_id" not in written

    decision = _decide().model_dump(mode="json")
    decision["drift_run_id"] = decision.pop("monitor_run_id")
    assert RetrainDecision.model_validate(decision).monitor_run_id == _decide().monitor_run_id
