"""Model cards: what the pure renderer puts on a version's card (no services)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from trainyard.core.lineage import RunContext
from trainyard.core.settings import Settings
from trainyard.core.spec import SpecError, load_spec, parse_spec
from trainyard.data.snapshots import SnapshotRef
from trainyard.data.validation import ExpectationOutcome, ValidationReport
from trainyard.governance.model_card import (
    MLFLOW_DESCRIPTION_LIMIT,
    CardFacts,
    DriftStatus,
    card_uri,
    description_of,
    render_card,
    with_approval,
)
from trainyard.training.gate import decide
from trainyard.training.registry import lineage_tags
from trainyard.training.steps import TrainingResult

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
SNAPSHOT = SnapshotRef(
    uri="s3://trainyard/snapshots/churn/abc.parquet",
    sha256="ab" * 32,
    rows=8000,
    window_start=date(2026, 3, 1),
    window_end=date(2026, 3, 28),
    sources=28,
)
REPORT = ValidationReport(
    success=True,
    suite="churn",
    suite_sha256="f" * 64,
    snapshot_sha256=SNAPSHOT.sha256,
    evaluated=12,
    failures=[],
    warnings=[
        ExpectationOutcome(
            expectation="expect_column_values_to_be_between",
            column="support_calls",
            severity="warning",
            unexpected_count=3,
            unexpected_percent=0.04,
        )
    ],
    result_uri="s3://trainyard/validation/churn/x/result.json",
    data_docs_uri="s3://trainyard/validation/churn/x/data_docs/index.html",
)
TRAINED = TrainingResult(
    mlflow_run_id="run1",
    experiment_id="1",
    model_uri="models:/m-1",
    rows_train=6390,
    rows_holdout=1600,
    dropped_unlabeled=10,
)
CONTEXT = RunContext(
    dag_id="train_churn", run_id="manual__1", trigger_reason="nightly", git_commit="c0ffee"
)
CHALLENGER = {"roc_auc": 0.8312, "accuracy": 0.8, "f1": 0.61, "log_loss": 0.4011}
CHAMPION = {"roc_auc": 0.8203, "accuracy": 0.79, "f1": 0.6, "log_loss": 0.4102}


def facts(**changes: object) -> CardFacts:
    decision = decide(CHURN.gate, CHALLENGER, CHAMPION, "3", leak_bounds=CHURN.leak_bounds)
    base = {
        "spec": CHURN,
        "version": "4",
        "alias": "champion",
        "snapshot": SNAPSHOT,
        "validation": REPORT,
        "training": TRAINED,
        "decision": decision,
        "lineage": lineage_tags(CHURN, SNAPSHOT, REPORT, TRAINED, decision, CONTEXT),
        "drift": None,
    }
    return CardFacts(**{**base, **changes})  # type: ignore[arg-type]


def section(card: str, title: str) -> str:
    """The lines of one ``## title`` section."""
    return card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_card_states_owner_purpose_and_limits_from_the_spec() -> None:
    card = render_card(facts())
    assert card.startswith("# Model card: churn v4\n")
    assert "owner **ml-platform**" in card
    assert CHURN.description in section(card, "Description")
    assert "retention team's weekly outreach list" in section(card, "Intended use")
    assert "customers with under one month of tenure" in section(card, "Limitations")
    assert "registered as champion" in card


def test_unstated_purpose_says_so() -> None:
    bare = CHURN.model_copy(update={"intended_use": "", "limitations": "  "})
    card = render_card(facts(spec=bare))
    assert section(card, "Intended use").strip() == "_not stated in the spec_"
    assert section(card, "Limitations").strip() == "_not stated in the spec_"


def test_card_holds_window_rows_and_features() -> None:
    data = section(render_card(facts()), "Training data")
    assert "window: 2026-03-01 to 2026-03-28" in data
    assert "8000 rows in the snapshot: 6390 trained on, 1600 held out" in data
    assert "10 without a label dropped" in data
    assert SNAPSHOT.uri in data
    features = section(render_card(facts()), "Model and features")
    assert ", ".join(CHURN.schema_.numeric_features) in features
    assert ", ".join(CHURN.schema_.categorical_features) in features
    assert f"target: {CHURN.schema_.target} (classification)" in features
    assert CHURN.model.estimator in features


def test_hourly_window_names_its_hours() -> None:
    hourly = SNAPSHOT.model_copy(update={"window_first_hour": 6, "window_last_hour": 17})
    data = section(render_card(facts(snapshot=hourly)), "Training data")
    assert "(06:00 of the first day to 17:59 of the last)" in data


def test_metrics_compare_with_the_champion_and_list_every_gate_check() -> None:
    card = facts()
    metrics = section(render_card(card), "Metrics (holdout)")
    assert "| metric | this version | champion v3 | difference |" in metrics
    assert "| roc_auc | 0.8312 | 0.8203 | +0.0109 |" in metrics
    assert "| log_loss | 0.4011 | 0.4102 | -0.0091 |" in metrics
    assert "Gate passed:" in metrics
    for check in card.decision.checks:
        assert f"- `{check.describe()}`" in metrics


def test_first_version_has_no_champion_column() -> None:
    decision = decide(CHURN.gate, CHALLENGER, None, None, "no champion yet")
    metrics = section(render_card(facts(decision=decision)), "Metrics (holdout)")
    assert "| roc_auc | 0.8312 |" in metrics
    assert "champion v" not in metrics
    assert "- note: no champion yet" in metrics


def test_validation_summary_counts_and_warnings() -> None:
    validation = section(render_card(facts()), "Data validation")
    assert "12 expectations evaluated, 0 failed, 1 warning(s)" in validation
    assert "support_calls: expect_column_values_to_be_between: 3 unexpected" in validation
    assert REPORT.data_docs_uri in validation


def test_drift_status_at_training_time() -> None:
    assert "No drift check had run" in section(render_card(facts()), "Drift at training time")
    drift = DriftStatus(
        verdict="drift",
        checked_at=datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        current_window="2026-03-28 to 2026-03-28",
        drifted_columns=("monthly_charges",),
        mlflow_run_id="mon1",
        report_uri="s3://trainyard/drift/churn/r/report.html",
    )
    triggered = facts(
        drift=drift,
        lineage={**facts().lineage, "drift_report_uri": "s3://trainyard/drift/churn/r/report.html"},
    )
    text = section(render_card(triggered), "Drift at training time")
    assert "trained because drift was found" in text
    assert "**drift** at 2026-03-29 01:00 UTC on 2026-03-28 to 2026-03-28" in text
    assert "drifted columns: monthly_charges" in text


def test_lineage_names_run_data_spec_and_code() -> None:
    card = facts()
    lineage = section(render_card(card), "Lineage")
    for key in ("mlflow_run_id", "snapshot_sha256", "spec_sha256", "git_commit", "fingerprint"):
        assert card.lineage[key] in lineage
    assert "Airflow run: `manual__1`" in lineage


def test_challenger_card_says_it_awaits_approval() -> None:
    assert "challenger (awaiting approval" in render_card(facts(alias="challenger"))


def test_rendering_is_deterministic() -> None:
    assert render_card(facts()) == render_card(facts())


def test_card_key_is_per_model_and_version() -> None:
    settings = Settings(artifacts_bucket="art")
    assert card_uri(settings, "churn", "4") == "s3://art/cards/churn/v4.md"


def test_long_card_is_cut_to_mlflows_limit_with_a_pointer() -> None:
    short = render_card(facts())
    assert description_of(short, "s3://x") == short
    long = short + "x" * MLFLOW_DESCRIPTION_LIMIT
    cut = description_of(long, "s3://art/cards/churn/v4.md")
    assert len(cut) == MLFLOW_DESCRIPTION_LIMIT
    assert cut.startswith(short[:100]) and cut.endswith("`s3://art/cards/churn/v4.md`)\n")


def test_spec_card_fields_are_optional_text(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    del data["intended_use"], data["limitations"]
    spec = parse_spec(data, tmp_path / "churn.yaml")
    assert (spec.intended_use, spec.limitations) == ("", "")
    with pytest.raises(SpecError, match="limitations"):
        parse_spec({**data, "limitations": ["not", "text"]}, tmp_path / "churn.yaml")


def test_a_reviewers_answer_ends_the_card_and_replaces_an_earlier_one() -> None:
    pending = render_card(facts(alias="challenger"))
    assert "challenger (awaiting approval in Airflow's Required Actions)" in pending

    approved = with_approval(pending, "approved by ana: metrics hold up")
    assert approved.startswith(pending.split("awaiting approval")[0])
    assert "awaiting approval" not in approved
    assert approved.endswith("\n\n## Approval\napproved by ana: metrics hold up\n")
    assert section(approved, "Lineage") == section(pending, "Lineage")

    again = with_approval(approved, "rejected by bo: too few rows")
    assert again.count("## Approval") == 1
    assert again.endswith("## Approval\nrejected by bo: too few rows\n")
