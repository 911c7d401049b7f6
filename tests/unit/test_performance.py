"""The performance monitor's pure parts: windows, drops, joins, verdicts, and the shared policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import REPO
from trainyard.core.spec import SpecError, parse_spec
from trainyard.drift.policy import RetrainRecord, decide, training_run_id
from trainyard.monitoring.steps import (
    Baseline,
    PerformanceSummary,
    decay_conf,
    drop_of,
    evaluate_window,
    join_window,
    monitor_windows,
    verdict_of,
)

SHIPPED = REPO / "include" / "pipelines"
DAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 9, 7, 30, tzinfo=UTC)


def _spec(**performance):
    data = yaml.safe_load((SHIPPED / "churn.yaml").read_text())
    data["performance"].update(performance)
    return parse_spec(data, Path("churn.yaml"))


BASELINE = Baseline(model_name="churn", version="3", metrics={"accuracy": 0.8, "log_loss": 0.4})


def test_the_demo_spec_watches_accuracy_within_three_percent_relative() -> None:
    spec = _spec()
    assert spec.performance.metric == "accuracy"
    assert (spec.performance.max_drop, spec.performance.drop) == (0.03, "relative")
    assert spec.labels.delay_days == 7 and spec.labels.prefix is None
    assert spec.performance_dag_id == "performance_churn"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("labels"), "performance needs a labels section"),
        (lambda d: d["performance"].update(metric="r2"), "watches metric 'r2'"),
        (lambda d: d["schema"].pop("id_column"), "needs schema.id_column"),
        (lambda d: d["performance"].update(max_drop=0), "field 'performance.max_drop'"),
        (lambda d: d["performance"].update(drop="percent"), "field 'performance.drop'"),
        (lambda d: d["labels"].update(delay_days=-1), "field 'labels.delay_days'"),
    ],
)
def test_a_bad_performance_section_is_refused_naming_the_field(mutate, message: str) -> None:
    data = yaml.safe_load((SHIPPED / "churn.yaml").read_text())
    mutate(data)
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        parse_spec(data, Path("churn.yaml"))


def test_labels_default_to_the_sources_own_partitions_csv_or_parquet_not_static_files() -> None:
    examples = REPO / "docs" / "examples" / "pipelines"
    monitored = {
        "labels": {"delay_days": 3},
        "performance": {"schedule": None, "metric": "accuracy", "max_drop": 0.03},
    }
    csv = {**yaml.safe_load((examples / "churn_dt_csv.yaml").read_text()), **monitored}
    assert parse_spec(csv, Path("churn_dt_csv.yaml")).labels.prefix is None
    static = {**yaml.safe_load((examples / "loans_static_csv.yaml").read_text()), **monitored}
    with pytest.raises(SpecError, match="labels.prefix is required unless the source is"):
        parse_spec(static, Path("loans_static_csv.yaml"))


def test_windows_are_consecutive_and_newest_first() -> None:
    assert monitor_windows(_spec(consecutive_windows=3), DAY) == [
        (DAY, DAY),
        (DAY - timedelta(days=1), DAY - timedelta(days=1)),
        (DAY - timedelta(days=2), DAY - timedelta(days=2)),
    ]
    assert monitor_windows(_spec(window_days=7, consecutive_windows=1), DAY) == [
        (DAY - timedelta(days=6), DAY)
    ]


def test_drops_are_positive_when_worse_in_either_direction() -> None:
    assert drop_of("accuracy", 0.776, 0.8, "relative") == pytest.approx(0.03)
    assert drop_of("accuracy", 0.85, 0.8, "relative") < 0
    assert drop_of("log_loss", 0.5, 0.4, "absolute") == pytest.approx(0.1)
    assert drop_of("log_loss", 0.3, 0.4, "relative") == pytest.approx(-0.25)


def _predictions(n: int, version: str = "3", correct: int | None = None) -> pd.DataFrame:
    correct = n if correct is None else correct
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "prediction": [1 if i < correct else 0 for i in range(n)],
            "model_version": version,
            "proba_0": [0.2 if i < correct else 0.6 for i in range(n)],
            "proba_1": [0.8 if i < correct else 0.4 for i in range(n)],
        }
    )


def _labels(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"row_id": ids, "label": pd.array([1] * len(ids), dtype="Int64")})


def test_a_window_joins_by_id_counts_unscored_labels_and_other_versions() -> None:
    spec = _spec(min_labelled_rows=10)
    predictions = pd.concat([_predictions(100, correct=70), _predictions(5, version="2")])
    labels = _labels([f"r{i}" for i in range(50, 100)] + ["late1", "late2"])

    result = evaluate_window(spec, BASELINE, (DAY, DAY), predictions, labels)

    assert (result.predictions, result.other_versions) == (100, 5)
    assert (result.labels, result.matched, result.unmatched_labels) == (52, 50, 2)
    # Rows r50..r99 are labelled 1; r50..r69 predicted 1: accuracy 20 / 50.
    assert result.value == pytest.approx(0.4) and result.status == "breach"
    assert result.drop == pytest.approx(0.5)


def test_too_few_labels_or_no_predictions_give_no_verdict() -> None:
    spec = _spec(min_labelled_rows=500)
    few = evaluate_window(spec, BASELINE, (DAY, DAY), _predictions(600), _labels(["r1"]))
    assert few.status == "insufficient_labels" and few.metrics == {}
    none = evaluate_window(spec, BASELINE, (DAY, DAY), _predictions(10, "2"), _labels(["r1"]))
    assert none.status == "no_predictions"
    assert verdict_of(spec, [few, few])[0] == "insufficient_labels"
    assert verdict_of(spec, [none, few])[0] == "no_predictions"


def test_decay_needs_every_consecutive_window_to_breach() -> None:
    spec = _spec(min_labelled_rows=10)
    bad = evaluate_window(spec, BASELINE, (DAY, DAY), _predictions(20, correct=10), _labels(
        [f"r{i}" for i in range(20)]
    ))  # fmt: skip
    good = evaluate_window(spec, BASELINE, (DAY, DAY), _predictions(20), _labels(
        [f"r{i}" for i in range(20)]
    ))  # fmt: skip
    assert good.status == "ok"
    verdict, message = verdict_of(spec, [bad, bad])
    assert verdict == "decay" and "decay: accuracy 0.5000, 0.5000 in 2 consecutive" in message
    verdict, message = verdict_of(spec, [bad, good])
    assert verdict == "no_decay" and "1 of 2 window(s)" in message


def _decay_summary() -> PerformanceSummary:
    spec = _spec(min_labelled_rows=10, consecutive_windows=1)
    window = evaluate_window(spec, BASELINE, (DAY, DAY), _predictions(20, correct=10), _labels(
        [f"r{i}" for i in range(20)]
    ))  # fmt: skip
    verdict, message = verdict_of(spec, [window])
    return PerformanceSummary(
        pipeline="churn", verdict=verdict, message=message, model_name="churn",
        model_version="3", metric="accuracy", baseline=0.8, max_drop=0.03,
        drop_kind="relative", min_labelled_rows=10, consecutive_windows=1, windows=[window],
        summary_uri="s3://t/performance/churn/v3/end-2026-03-02/in-x/summary.json",
    )  # fmt: skip


def test_the_retrain_reason_names_metric_values_baseline_window_and_summary() -> None:
    conf = decay_conf(_decay_summary())
    assert conf["reason"] == (
        "decay: accuracy 0.5000 vs holdout 0.8000 (-37.50%) of churn v3 in "
        "2026-03-02..2026-03-02 (1 window(s) below the allowed drop 0.03 relative); "
        "report s3://t/performance/churn/v3/end-2026-03-02/in-x/summary.json"
    )
    assert conf["window_end"] == "2026-03-02"


def _decide_decay(last: RetrainRecord | None, run_id: str = "scheduled__perf", **arguments):
    summary = _decay_summary()
    return decide(
        summary.reference_for_xcom(),
        now=NOW,
        cooldown_hours=6,
        last_retrain=last,
        active_training_runs=0,
        monitor_run_id=run_id,
        training_dag_id="train_churn",
        signal="decay",
        conf=decay_conf(summary),
        **arguments,
    )


def test_decay_asks_for_the_slots_retrain_and_respects_the_drift_cooldown() -> None:
    decision = _decide_decay(None)
    assert decision.action == "retrain" and decision.signal == "decay"
    # The run the drift monitor asks for in the same slot: racing verdicts give one retrain.
    assert decision.training_run_id == "retrain__20260309T060000Z"
    assert decision.training_run_id == training_run_id(NOW, 6, "any run", signal="drift")
    assert decision.conf["reason"].startswith("decay: accuracy 0.5000")

    drift_retrain = RetrainRecord(
        signal="drift", training_dag_id="train_churn", training_run_id="retrain__20260309T060000Z",
        requested_at=NOW - timedelta(hours=1), monitor_dag_id="drift_churn",
        monitor_run_id="scheduled__perf", report_uri=None, drifted_columns=["a"], drift_share=0.5,
    )  # fmt: skip
    suppressed = _decide_decay(drift_retrain)
    # Same run id as the drift monitor's, but another monitor: not mistaken for a retry of its own.
    assert suppressed.action == "suppressed_cooldown" and not suppressed.retrain
    assert suppressed.message.startswith("decay detected, retrain suppressed: cooldown until")


def test_a_forced_or_unslotted_decay_retrain_is_named_for_its_signal() -> None:
    forced = _decide_decay(None, force=True)
    assert forced.retrain and forced.training_run_id == "decay__forced__scheduled__perf"
    assert training_run_id(NOW, 0, "scheduled__perf", signal="decay") == "decay__scheduled__perf"


def test_no_decay_verdicts_are_recorded_as_such() -> None:
    for verdict in ("no_decay", "insufficient_labels", "no_predictions"):
        summary = {**_decay_summary().reference_for_xcom(), "verdict": verdict}
        decision = decide(
            summary, now=NOW, cooldown_hours=6, last_retrain=None, active_training_runs=0,
            monitor_run_id="r", training_dag_id="train_churn", signal="decay",
        )  # fmt: skip
        assert (decision.action, decision.retrain, decision.signal) == (verdict, False, "decay")


def test_joining_predictions_piece_by_piece_equals_joining_them_whole() -> None:
    """The monitor streams the prediction log; the join must not depend on how it is cut."""
    predictions = pd.concat(
        [_predictions(100, correct=70), _predictions(5, version="2"), _predictions(3)],
        ignore_index=True,
    )  # r0..r2 predicted twice by the champion: each prediction joins its label
    labels = _labels([f"r{i}" for i in range(95, -1, -1)] + ["late"])
    whole = pd.merge(
        predictions[predictions["model_version"] == BASELINE.version], labels, on="row_id"
    )

    join = join_window(BASELINE, (predictions.iloc[i : i + 7] for i in range(0, 108, 7)), labels)

    assert (join.predictions, join.other_versions, join.labels) == (103, 5, 97)
    assert join.unmatched_labels == 1 and len(join.joined) == len(whole) == 99
    expected = whole[["prediction", "proba_0", "proba_1", "label"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(join.joined, expected)


@pytest.mark.parametrize("id_dtype", [object, "string[pyarrow]"])
def test_the_join_matches_ids_the_same_whether_they_are_python_or_arrow_strings(id_dtype) -> None:
    """Labels read from Parquet keep their ids as Arrow strings; predictions come either way."""
    predictions = _predictions(40, correct=25)
    predictions["row_id"] = predictions["row_id"].astype(id_dtype)
    labels = _labels([f"r{i}" for i in range(39, 9, -1)] + ["late"])
    labels["row_id"] = labels["row_id"].astype("string[pyarrow]")
    expected = pd.merge(predictions, labels.astype({"row_id": object}), on="row_id")

    join = join_window(BASELINE, [predictions.iloc[:17], predictions.iloc[17:]], labels)

    assert (join.labels, join.unmatched_labels, len(join.joined)) == (31, 1, 30)
    pd.testing.assert_frame_equal(
        join.joined, expected[["prediction", "proba_0", "proba_1", "label"]]
    )


def test_the_check_key_hashes_labels_in_slices_to_the_digest_of_the_whole() -> None:
    """Hashing a window's labels a slice at a time gives the key hashing them whole gave."""
    import hashlib

    from trainyard.data.predictions import PIECE_ROWS
    from trainyard.monitoring.steps import _hash_rows

    rows = PIECE_ROWS + 1000
    labels = pd.DataFrame(
        {
            "row_id": pd.array([f"C{i:07d}" for i in range(rows)], dtype="string[pyarrow]"),
            "label": pd.array([i % 2 for i in range(rows)], dtype="Int64"),
        }
    )
    whole = hashlib.sha256()
    whole.update(pd.util.hash_pandas_object(labels.astype(str), index=False).to_numpy().tobytes())
    sliced = hashlib.sha256()

    _hash_rows(sliced, labels)

    assert sliced.hexdigest() == whole.hexdigest()


def test_labels_read_from_parquet_keep_their_ids_as_arrow_strings() -> None:
    """A million ids as Python objects would cost ~80 MB more than the column itself."""
    import io

    from trainyard.data.sources import file_columns

    spec = _spec()
    body = io.BytesIO()
    frame = pd.DataFrame(
        {"customer_id": ["C1", "C2"], "tenure_months": [1, 2], "churned": [0, 1]}
    ).astype({"churned": "Int64"})
    frame.to_parquet(body, index=False)

    (labels,) = file_columns(
        spec, spec.source, body.getvalue(), "s3://raw/x.parquet", ["customer_id", "churned"]
    )

    assert labels["customer_id"].dtype == "string[pyarrow]"
    assert labels["customer_id"].tolist() == ["C1", "C2"]
    assert labels["churned"].dtype == "Int64" and labels["churned"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([0, 1, 1]), [0, 1, 1]),
        (pd.Series([0, 1], dtype="Int64"), [0, 1]),
        (pd.Series([1.0, 0.0]), [1, 0]),
        (pd.Series([0.5, 1.0]), ["0.5", "1.0"]),
        (pd.Series([1, None], dtype="Int64"), ["1", "<NA>"]),
        (pd.Series([True, False]), ["True", "False"]),
        (["1", "0"], [1, 0]),
    ],
)
def test_classes_compare_in_one_form_whether_numbers_or_text(values, expected) -> None:
    """Numbers skip the text route (no string per row) and give what the text route gives."""
    from trainyard.monitoring.steps import as_classes

    classes = as_classes(values)

    assert classes.tolist() == expected
    assert classes.dtype == ("int64" if isinstance(expected[0], int) else object)
