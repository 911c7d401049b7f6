"""End to end: the performance monitor under ``dag.test()`` on SeaweedFS S3 and an MLflow server.

Test-only pipeline ``churn_perf``: version 1 is trained on two weeks of January, then February
days arrive without labels and are scored by it (the scoring steps, in this process); a week
later the same partitions land again with ``churned`` filled, plus late rows that were never
scored. Stable days keep the January rule; decayed days follow the generator's concept-drift
knob. Windows are one day; two consecutive breaching windows are decay.

The decay run that triggers a retrain is a module fixture (it records what it created at once),
so the storm-protection case can run after it in any order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from tests.support import (
    DagRunResult,
    dag_runs,
    evidence_link,
    make_champion,
    model_versions,
    spec_named,
)

pytestmark = pytest.mark.e2e

PIPELINE = "churn_perf"
NO_CHAMPION = "churn_no_champion"
MONITOR_DAG = "performance_churn_perf"
TRAIN_DAG = "train_churn_perf"
TRAIN_END = date(2026, 1, 14)
STABLE = (date(2026, 2, 1), date(2026, 2, 2))
DECAYED = (date(2026, 2, 3), date(2026, 2, 4))
FEW_LABELS_DAY = date(2026, 2, 5)
UNSCORED_DAY = date(2026, 2, 6)
ONLINE_DAY = date(2026, 2, 7)
ROWS = 2000
#: Late rows in each re-landed partition that were never scored (their labels are ignored).
LATE_ROWS = 40
CONCEPT_DRIFT = 0.8


def _relanded(day: date, rows: int, **knobs: Any) -> Any:
    """The day's partition as it lands again with labels: the scored rows plus late ones."""
    import pandas as pd

    from trainyard_dev.churn import Knobs, generate_day

    scored = generate_day(day, rows, Knobs(**knobs))
    late = generate_day(day, LATE_ROWS, Knobs(**knobs), seed=1)
    late["customer_id"] = [f"LATE{day:%Y%m%d}-{i:04d}" for i in range(LATE_ROWS)]
    return pd.concat([scored, late], ignore_index=True)


@pytest.fixture(scope="module")
def scored(stack: Any, settings: Any) -> str:
    """v1 trained on January; February scored without labels; labels landed a week later."""
    from trainyard.core import storage
    from trainyard.core.lineage import RunContext
    from trainyard.data.snapshots import TrainingWindow
    from trainyard.scoring import steps as scoring
    from trainyard.training import steps as training
    from trainyard_dev.churn import Knobs, land_days, partition_uri

    spec = spec_named(PIPELINE)
    land_days(settings, date(2026, 1, 1), TRAIN_END, 1000, prefix=PIPELINE)
    window = TrainingWindow.ending(TRAIN_END, spec.window.days)
    outcome = training.run(spec, settings, window, RunContext.for_cli(PIPELINE, "test: v1"))
    assert outcome.status == "registered", outcome
    make_champion(PIPELINE, outcome.version)
    days = {**dict.fromkeys(STABLE + DECAYED, ROWS), FEW_LABELS_DAY: 300}
    for day, rows in days.items():
        land_days(settings, day, day, rows, Knobs(labels_missing=True), prefix=PIPELINE)
        scoring.run(spec, settings, day, f"test_scoring_{day}", _now(), window_end=day)
    # A week later the outcomes are known: the partitions land again with churned filled.
    for day, rows in days.items():
        knobs = {"concept_drift": CONCEPT_DRIFT} if day in DECAYED else {}
        frame = _relanded(day, rows, **knobs)
        uri = partition_uri(settings.raw_bucket, PIPELINE, day)
        storage.put_bytes(settings, uri, storage.parquet_bytes(frame))
    return outcome.version


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture
def champion(scored: str) -> str:
    make_champion(PIPELINE, scored)
    return scored


def _monitor(run_dag, window_end: date, **conf: Any) -> DagRunResult:
    return run_dag(MONITOR_DAG, {"window_end": window_end.isoformat(), **conf})


def _summary(settings: Any, run: DagRunResult) -> Any:
    from trainyard.core import storage
    from trainyard.monitoring.steps import PerformanceSummary

    uri = run.xcoms["evaluate"]["summary_uri"]
    return PerformanceSummary.model_validate_json(storage.get_bytes(settings, uri))


def _decision(settings: Any, run: DagRunResult) -> Any:
    from trainyard.core import storage
    from trainyard.drift.ledger import decision_uri
    from trainyard.drift.policy import RetrainDecision

    body = storage.get_bytes(settings, decision_uri(settings, PIPELINE, run.run_id, "decay"))
    return RetrainDecision.model_validate_json(body)


def _retrains() -> dict[str, str]:
    """Runs of the training DAG the performance monitor created (``retrain__<slot>``, or
    ``decay__…`` when forced)."""
    return {k: v for k, v in dag_runs(TRAIN_DAG).items() if k.startswith(("retrain__", "decay__"))}


def _baseline() -> float:
    from tests.support import champion_of

    return float(champion_of(PIPELINE).tags["metric.accuracy"])


@dataclass
class Triggered:
    """The decay run that asked for a retrain, and the training runs it created."""

    run: DagRunResult
    created: dict[str, str]
    confs: dict[str, dict]


@pytest.fixture(scope="module")
def decay_run(scored, run_dag, settings) -> Triggered:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from trainyard.drift.ledger import last_retrain

    make_champion(PIPELINE, scored)
    assert last_retrain(settings, PIPELINE) is None, "a retrain was requested before this one"
    before = _retrains()

    run = _monitor(run_dag, DECAYED[-1])

    created = {k: v for k, v in _retrains().items() if k not in before}
    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == TRAIN_DAG, DagRun.run_id.in_(list(created)))
        ).all()
        confs = {r.run_id: dict(r.conf or {}) for r in runs}
    return Triggered(run=run, created=created, confs=confs)


def test_stable_labels_realised_metrics_no_decay_no_training_run(champion, run_dag, settings):
    from mlflow import MlflowClient

    before = _retrains()

    run = _monitor(run_dag, STABLE[-1])

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "no_decay", summary.describe()
    assert summary.model_version == champion and summary.baseline == pytest.approx(_baseline())
    assert [(w.start, w.status) for w in summary.windows] == [
        (STABLE[1], "ok"),
        (STABLE[0], "ok"),
    ]
    for window in summary.windows:
        # Joined by id: every scored row has its label; the late rows' labels are only counted.
        assert window.predictions == window.matched == ROWS
        assert window.labels == ROWS + LATE_ROWS and window.unmatched_labels == LATE_ROWS
        assert set(window.metrics) == {"roc_auc", "accuracy", "f1", "log_loss"}
        assert abs(window.drop) <= 0.03
    assert _decision(settings, run).action == "no_decay"
    assert run.task_states["trigger_retrain"] == "skipped"
    assert _retrains() == before
    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"{PIPELINE}-monitoring")
    (logged,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.airflow_run_id = '{run.run_id}'"
    )
    assert logged.data.metrics["realised_accuracy"] == summary.newest.value
    assert logged.data.metrics["baseline_accuracy"] == pytest.approx(_baseline())
    assert logged.data.tags["model_version"] == champion
    # The evaluate task links to its HTML report and its MLflow run.
    recorded, url = evidence_link("Performance report", MONITOR_DAG, run.run_id, "evaluate")
    assert recorded == summary.report_uri and "Signature=" in url
    _, url = evidence_link("MLflow run", MONITOR_DAG, run.run_id, "evaluate")
    assert url.endswith(f"/#/experiments/{experiment.experiment_id}/runs/{logged.info.run_id}")
    _assert_drift_report(settings, run, summary, logged)


def _assert_drift_report(settings: Any, run: DagRunResult, summary: Any, logged: Any) -> None:
    """Prediction and target drift: the HTML report and the JSON summary side by side under the
    check's key, the same values in XCom and in the monitoring experiment."""
    from trainyard.core import storage

    prefix = summary.summary_uri.removesuffix("/summary.json")
    assert summary.summary_uri.startswith(
        f"s3://{settings.artifacts_bucket}/performance/{PIPELINE}/v{summary.model_version}/"
        f"end-{summary.newest.end}/in-"
    )
    assert summary.report_uri == f"{prefix}/report.html" == run.xcoms["evaluate"]["report_uri"]
    html = storage.get_bytes(settings, summary.report_uri).decode()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:2000]
    shift = summary.shift
    assert shift is not None and summary.shift_note is None
    assert shift.score_column == "proba_1" and shift.target.column == "label"
    assert shift.current_rows == summary.newest.matched and shift.reference_rows > 0
    assert shift.quality["accuracy"] == pytest.approx(summary.newest.metrics["accuracy"])
    assert run.xcoms["evaluate"]["prediction_drift"] == shift.prediction.drifted
    assert run.xcoms["evaluate"]["target_drift"] == shift.target.drifted
    metrics = logged.data.metrics
    assert metrics["prediction_drift_score"] == pytest.approx(shift.prediction.score)
    assert metrics["target_drift_score"] == pytest.approx(shift.target.score)
    assert metrics["prediction_drift"] == float(shift.prediction.drifted)
    assert metrics["target_drift"] == float(shift.target.drifted)
    assert logged.data.tags["report_uri"] == summary.report_uri


def test_without_a_champion_the_run_says_so_no_verdict_nothing_triggered(run_dag, settings):
    from trainyard.core import storage
    from trainyard.drift.ledger import decision_uri
    from trainyard.drift.policy import RetrainDecision

    assert model_versions(NO_CHAMPION) == set()  # nothing registers this model

    run = run_dag(f"performance_{NO_CHAMPION}", {"window_end": STABLE[-1].isoformat()})

    assert run.state == "success", run.task_states
    assert set(run.task_states.values()) == {"skipped"}, run.task_states
    body = storage.get_bytes(settings, decision_uri(settings, NO_CHAMPION, run.run_id, "decay"))
    decision = RetrainDecision.model_validate_json(body)
    assert decision.action == "no_champion" and not decision.retrain
    assert decision.signal == "decay"
    assert f"no champion of model '{NO_CHAMPION}'" in decision.message
    keys = storage.list_keys(settings, settings.artifacts_bucket, f"performance/{NO_CHAMPION}/")
    assert keys == [f"performance/{NO_CHAMPION}/runs/{run.run_id}/decision.json"]
    assert dag_runs(f"train_{NO_CHAMPION}") == {}


def test_the_models_page_shows_the_latest_realised_metrics(champion, run_dag) -> None:
    from trainyard.monitoring.steps import latest_check_run
    from trainyard.ui.models_page import realised_from_run

    run = _monitor(run_dag, STABLE[-1])

    assert run.state == "success", run.task_states
    latest = latest_check_run(spec_named(PIPELINE))
    assert latest is not None and latest.data.tags["airflow_run_id"] == run.run_id
    realised = realised_from_run(latest)
    assert realised.model_version == champion and realised.window_end == str(STABLE[-1])
    assert realised.metrics["accuracy"] == run.xcoms["evaluate"]["value"]


def test_the_realised_accuracy_is_the_champions_on_the_labelled_rows(champion, settings):
    """Recomputed here from the stored predictions and the labels, independently of the monitor."""
    from sklearn.metrics import accuracy_score

    from trainyard.data.predictions import read_predictions
    from trainyard.monitoring.steps import Baseline, check_performance
    from trainyard_dev.churn import generate_day

    day = STABLE[-1]
    logged = read_predictions(settings, PIPELINE, [day])
    truth = generate_day(day, ROWS).set_index("customer_id")["churned"]
    expected = accuracy_score(truth.loc[logged["row_id"]].astype(int), logged["prediction"])

    baseline = Baseline(model_name=PIPELINE, version=champion, metrics={"accuracy": _baseline()})
    summary = check_performance(spec_named(PIPELINE), settings, baseline, day)

    assert summary.newest.value == pytest.approx(expected)


def test_concept_drift_is_decay_named_with_metric_and_values_and_one_retrain(decay_run, settings):
    run = decay_run.run
    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "decay", summary.describe()
    assert [w.status for w in summary.windows] == ["breach", "breach"]
    assert all(w.drop > 0.03 for w in summary.windows)
    assert "decay: accuracy" in summary.message and "2 consecutive window(s)" in summary.message

    (run_id,) = decay_run.created
    assert decay_run.created[run_id] == "queued"
    assert run_id.startswith("retrain__") and run_id == _decision(settings, run).training_run_id
    decision = run.xcoms["decide"]
    assert decision["action"] == "retrain" and decision["signal"] == "decay"
    assert decision["training_run_id"] == run_id
    conf = decay_run.confs[run_id]
    reason = conf["reason"]
    newest = summary.newest
    named = f"decay: accuracy {newest.value:.4f} vs holdout {summary.baseline:.4f}"
    assert reason.startswith(named)
    assert f"{DECAYED[0]}..{DECAYED[1]}" in reason and f"report {summary.report_uri}" in reason
    assert summary.report_uri.endswith("/report.html")
    assert conf["performance_summary_uri"] == summary.summary_uri
    assert conf["window_end"] == DECAYED[1].isoformat()
    assert _decision(settings, run).action == "retrain"


def test_a_decay_verdict_inside_the_drift_cooldown_gives_no_second_retrain(
    decay_run, champion, run_dag, settings
) -> None:
    """The drift monitor asks in the same slot after the decay retrain: one ledger, one cooldown.

    Then the monitor decays again: still suppressed, still one retrain. The drift monitor's
    entry is stored as ledgers were before both monitors shared them (``drift_dag_id`` /
    ``drift_run_id``): it still reads, and still holds the cooldown.
    """
    from trainyard.core import storage
    from trainyard.drift.ledger import last_retrain, ledger_uri
    from trainyard.drift.policy import RetrainRecord

    decay_retrain = last_retrain(settings, PIPELINE)
    assert decay_retrain.signal == "decay"
    drift_retrain = RetrainRecord(
        signal="drift",
        training_dag_id=TRAIN_DAG,
        training_run_id=decay_retrain.training_run_id,
        requested_at=_now(),
        monitor_dag_id=f"drift_{PIPELINE}",
        monitor_run_id="scheduled__test_drift_in_the_same_slot",
        report_uri=None,
        drifted_columns=["support_calls"],
        drift_share=0.3,
    )
    stored = drift_retrain.model_dump(mode="json")
    stored["drift_dag_id"] = stored.pop("monitor_dag_id")
    stored["drift_run_id"] = stored.pop("monitor_run_id")
    storage.put_bytes(settings, ledger_uri(settings, PIPELINE), json.dumps(stored).encode())
    assert last_retrain(settings, PIPELINE) == drift_retrain
    before = _retrains()

    run = _monitor(run_dag, DECAYED[-1])

    assert run.state == "success", run.task_states
    decision = _decision(settings, run)
    assert decision.action == "suppressed_cooldown", decision.message
    assert decision.message.startswith("decay detected, retrain suppressed: cooldown until ")
    assert drift_retrain.training_run_id in decision.message
    assert run.task_states["trigger_retrain"] == "skipped"
    assert _retrains() == before
    assert last_retrain(settings, PIPELINE) == drift_retrain


def test_decay_in_one_window_only_is_not_decay(champion, run_dag, settings) -> None:
    before = _retrains()

    run = _monitor(run_dag, DECAYED[0])  # windows: DECAYED[0] breaches, STABLE[1] does not

    summary = _summary(settings, run)
    assert [w.status for w in summary.windows] == ["breach", "ok"]
    assert summary.verdict == "no_decay"
    assert "1 of 2 window(s)" in summary.message
    assert _retrains() == before


def test_too_few_labels_is_no_verdict_and_recorded(champion, run_dag, settings) -> None:
    before = _retrains()

    run = _monitor(run_dag, FEW_LABELS_DAY)

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "insufficient_labels"
    assert summary.newest.matched == 300 and summary.newest.metrics == {}
    assert "300 labelled prediction(s) < 500: no verdict" in summary.message
    decision = _decision(settings, run)
    assert decision.action == "insufficient_labels" and not decision.retrain
    assert _retrains() == before


def test_a_window_without_predictions_says_so(champion, run_dag, settings) -> None:
    run = _monitor(run_dag, UNSCORED_DAY)

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "no_predictions"
    assert f"no predictions of the champion for {UNSCORED_DAY}..{UNSCORED_DAY}" in summary.message
    assert _decision(settings, run).action == "no_predictions"


def test_the_cli_gives_the_same_verdict_without_airflow(champion, airflow_db, capsys) -> None:
    """Counting retrains reads the Airflow DB: this test may be first in its module to use it."""
    from trainyard.cli import main
    from trainyard.monitoring.steps import PerformanceSummary

    before = _retrains()

    code = main(["monitor", PIPELINE, "--window-end", STABLE[-1].isoformat()])

    printed = capsys.readouterr()
    assert code == 0, printed.err
    summary = PerformanceSummary.model_validate_json(printed.out)
    assert summary.verdict == "no_decay"
    assert "would give: " in printed.err
    assert _retrains() == before


def test_online_predictions_are_read_and_joined_like_batch_ones(champion, settings) -> None:
    """The online server's flushed files (same layout, source ``online``) count as predictions."""
    import mlflow

    from trainyard.core import storage
    from trainyard.data import predictions
    from trainyard.monitoring.steps import champion_baseline, check_performance
    from trainyard_dev.churn import generate_day, partition_uri

    spec = spec_named(PIPELINE)
    requests = generate_day(ONLINE_DAY, 600)
    model = mlflow.sklearn.load_model(f"models:/{PIPELINE}/{champion}")
    features = requests[list(spec.schema_.features)].astype(
        dict.fromkeys(spec.schema_.numeric_features, "float64")
    )
    for flush, rows in enumerate((slice(0, 250), slice(250, 600))):
        logged = predictions.prediction_frame(
            requests["customer_id"][rows],
            model.predict(features[rows]),
            model.predict_proba(features[rows]),
            model.classes_,
            model_name=PIPELINE,
            model_version=champion,
            run_id="server-test",
            source="online",
            scored_at=_now(),
        )
        uri = predictions.online_uri(settings, PIPELINE, ONLINE_DAY, f"flush-{flush}")
        storage.put_bytes(settings, uri, storage.parquet_bytes(logged))
    labels = partition_uri(settings.raw_bucket, PIPELINE, ONLINE_DAY)
    storage.put_bytes(settings, labels, storage.parquet_bytes(_relanded(ONLINE_DAY, 600)))

    summary = check_performance(spec, settings, champion_baseline(spec), ONLINE_DAY)

    newest = summary.newest
    assert (newest.predictions, newest.matched, newest.unmatched_labels) == (600, 600, LATE_ROWS)
    assert newest.status in {"ok", "breach"} and newest.value is not None
