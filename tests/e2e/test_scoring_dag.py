"""End to end: the batch-scoring DAG under ``dag.test()`` on SeaweedFS S3 and an MLflow server.

Uses the test-only pipeline ``churn_scoring`` (its own raw prefix and registered model) and fixed
dates. Version 1 is trained once per module (in-process, the CLI's steps) and made champion again
before each test that needs it; version 2 is the same model registered again, so "a new
champion" is a new version whatever the gate would say. The days to score arrive without labels.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.support import champion_of, evidence_link, make_champion, model_versions, spec_named

pytestmark = pytest.mark.e2e

PIPELINE = "churn_scoring"
SCORE_DAG = "score_churn_scoring"
TRAIN_END = date(2026, 1, 14)
SCORE_DAY = date(2026, 2, 1)
NEW_CHAMPION_DAY = date(2026, 2, 2)
BROKEN_DAY = date(2026, 2, 3)
MISSING_FEATURE_DAY = date(2026, 2, 4)
CLI_DAY = date(2026, 2, 5)
ROWS = 800


def _land(settings: Any, day: date, **knobs: Any) -> None:
    from trainyard_dev.churn import Knobs, land_days

    land_days(settings, day, day, ROWS, Knobs(labels_missing=True, **knobs), prefix=PIPELINE)


@pytest.fixture(scope="module")
def version_one(stack: Any, settings: Any) -> str:
    """churn_scoring v1, trained on two weeks of January (the CLI's steps, in this process)."""
    from trainyard.core.lineage import RunContext
    from trainyard.data.snapshots import TrainingWindow
    from trainyard.training import steps
    from trainyard_dev.churn import land_days

    spec = spec_named(PIPELINE)
    land_days(settings, date(2026, 1, 1), TRAIN_END, 1000, prefix=PIPELINE)
    for day in (SCORE_DAY, NEW_CHAMPION_DAY, CLI_DAY):
        _land(settings, day)
    _land(settings, BROKEN_DAY, corruption=("out_of_range",))
    _land(settings, MISSING_FEATURE_DAY, corruption=("missing_column",))
    window = TrainingWindow.ending(TRAIN_END, spec.window.days)
    outcome = steps.run(spec, settings, window, RunContext.for_cli(PIPELINE, "test: v1"))
    assert outcome.status == "registered", outcome
    return outcome.version


@pytest.fixture
def champion(version_one: str) -> str:
    """v1 as the champion (the new-champion test moves the alias)."""
    make_champion(PIPELINE, version_one)
    return version_one


def _score(run_dag, day: date, pipeline: str = PIPELINE) -> Any:
    return run_dag(f"score_{pipeline}", {"window_end": day.isoformat()})


def _record(settings: Any, run_id: str, pipeline: str = PIPELINE) -> Any:
    from trainyard.core import storage
    from trainyard.scoring.steps import ScoringRecord, record_uri

    body = storage.get_bytes(settings, record_uri(settings, pipeline, run_id))
    return ScoringRecord.model_validate_json(body)


def _day_keys(settings: Any, day: date, pipeline: str = PIPELINE) -> list[str]:
    from trainyard.core import storage

    prefix = f"predictions/{pipeline}/batch/date={day:%Y-%m-%d}/"
    return storage.list_keys(settings, settings.artifacts_bucket, prefix)


def _object_state(settings: Any, uri: str) -> tuple[str, Any]:
    from trainyard.core import storage

    target = storage.S3Uri.parse(uri)
    head = storage.client(settings).head_object(Bucket=target.bucket, Key=target.key)
    return head["ETag"], head["LastModified"]


def test_predictions_are_the_champions_own_on_the_same_rows(champion, run_dag, settings):
    import mlflow

    from trainyard.core import storage
    from trainyard.data import predictions
    from trainyard.scoring.steps import record_uri
    from trainyard_dev.churn import generate_day

    run = _score(run_dag, SCORE_DAY)

    assert run.state == "success", run.task_states
    assert run.xcoms["champion"]["version"] == champion
    uri = predictions.batch_uri(settings, PIPELINE, SCORE_DAY, champion)
    scored = storage.read_parquet(settings, uri)
    rows = generate_day(SCORE_DAY, ROWS)
    model = mlflow.sklearn.load_model(f"models:/{PIPELINE}/{champion}")
    features = rows[list(spec_named(PIPELINE).schema_.features)]
    features = features.astype({c: "float64" for c in features.select_dtypes("number").columns})
    expected = model.predict_proba(features)
    assert scored["row_id"].tolist() == rows["customer_id"].tolist()
    for index, label in enumerate(model.classes_):
        assert scored[f"proba_{label}"].to_numpy() == pytest.approx(expected[:, index], abs=1e-12)
    assert scored["prediction"].tolist() == model.predict(features).tolist()
    assert set(scored["model_version"]) == {champion}
    assert set(scored["model_name"]) == {PIPELINE} and set(scored["source"]) == {"batch"}
    manifest = predictions.read_manifest(settings, PIPELINE, SCORE_DAY)
    assert manifest.current_uri == uri and manifest.model_version == champion
    record = _record(settings, run.run_id)
    assert record.status == "scored" and record.model_version == champion
    assert [d.uri for d in record.days] == [uri]
    # Same layout the monitor reads: the current batch object of the day.
    logged = predictions.read_predictions(settings, PIPELINE, [SCORE_DAY])
    assert len(logged) == ROWS and set(logged["model_version"]) == {champion}
    # The score task links to the run's record (presigned), the champion task to nothing.
    recorded, url = evidence_link("Scoring report", f"score_{PIPELINE}", run.run_id, "score")
    assert recorded == record_uri(settings, PIPELINE, run.run_id)
    assert f"/scoring/{PIPELINE}/runs/" in url and "Signature=" in url
    assert evidence_link("Scoring report", f"score_{PIPELINE}", run.run_id, "champion") == (
        None,
        "",
    )


def test_a_rerun_with_the_same_champion_rewrites_nothing(champion, run_dag, settings) -> None:
    from trainyard.data import predictions

    _score(run_dag, SCORE_DAY)  # whatever ran before, the day is scored by v1 now
    uri = predictions.batch_uri(settings, PIPELINE, SCORE_DAY, champion)
    keys_before = _day_keys(settings, SCORE_DAY)
    states_before = {
        key: _object_state(settings, f"s3://{settings.artifacts_bucket}/{key}")
        for key in keys_before
    }

    run = _score(run_dag, SCORE_DAY)

    assert run.state == "success", run.task_states
    (day,) = _record(settings, run.run_id).days
    assert day.uri == uri and not day.written and not day.manifest_moved
    assert _day_keys(settings, SCORE_DAY) == keys_before
    for key, state in states_before.items():
        assert _object_state(settings, f"s3://{settings.artifacts_bucket}/{key}") == state, key


def test_a_new_champion_writes_a_second_object_and_moves_the_manifest(
    champion, run_dag, settings
) -> None:
    import mlflow

    from trainyard.core import storage
    from trainyard.data import predictions

    first = _score(run_dag, NEW_CHAMPION_DAY)
    assert first.state == "success", first.task_states
    old_uri = predictions.batch_uri(settings, PIPELINE, NEW_CHAMPION_DAY, champion)
    old_state = _object_state(settings, old_uri)
    v1 = champion_of(PIPELINE)
    newer = mlflow.register_model(v1.source, PIPELINE)  # the same model as a newer version
    make_champion(PIPELINE, newer.version)
    try:
        run = _score(run_dag, NEW_CHAMPION_DAY)
    finally:
        make_champion(PIPELINE, champion)

    assert run.state == "success", run.task_states
    assert run.xcoms["champion"]["version"] == newer.version != champion
    new_uri = predictions.batch_uri(settings, PIPELINE, NEW_CHAMPION_DAY, newer.version)
    (day,) = _record(settings, run.run_id).days
    assert day.uri == new_uri and day.written and day.manifest_moved
    assert _object_state(settings, old_uri) == old_state  # the old object stays as it was
    manifest = predictions.read_manifest(settings, PIPELINE, NEW_CHAMPION_DAY)
    assert manifest.current_uri == new_uri and manifest.run_id == run.run_id
    assert set(storage.read_parquet(settings, new_uri)["model_version"]) == {newer.version}
    assert newer.version in model_versions(PIPELINE)


def test_without_a_champion_the_run_is_skipped_with_the_reason(stack, run_dag, settings):
    assert model_versions("churn_no_champion") == set()

    run = _score(run_dag, SCORE_DAY, "churn_no_champion")

    assert run.state == "success", run.task_states
    assert set(run.task_states.values()) == {"skipped"}, run.task_states
    record = _record(settings, run.run_id, "churn_no_champion")
    assert record.status == "no_champion" and record.model_version is None
    assert "no champion of model 'churn_no_champion'" in record.message
    assert _day_keys(settings, SCORE_DAY, "churn_no_champion") == []
    # The skipped task still links to the record that says why.
    recorded, _ = evidence_link("Scoring report", "score_churn_no_champion", run.run_id, "champion")
    assert recorded is not None and recorded.endswith(f"/runs/{run.run_id}.json")


def test_a_broken_batch_fails_as_data_quality_and_writes_nothing(champion, run_dag, settings):
    run = _score(run_dag, BROKEN_DAY)

    assert run.state == "failed"
    assert run.task_states["batch"] == "success"
    assert run.task_states["validate"] == "failed"
    assert run.task_states["score"] == "upstream_failed"
    assert _day_keys(settings, BROKEN_DAY) == []
    record = _record(settings, run.run_id)
    assert record.status == "data_quality_failure"
    assert "tenure_months: expect_column_values_to_be_between" in record.message
    # The suite minus its two expectations on the target (batches to score have no labels).
    assert "1 of 24 expectations in suite 'churn-without-churned'" in record.message


def test_a_missing_feature_fails_naming_it_and_writes_nothing(champion, run_dag, settings):
    run = _score(run_dag, MISSING_FEATURE_DAY)

    assert run.state == "failed"
    assert run.task_states["batch"] == "failed"
    assert _day_keys(settings, MISSING_FEATURE_DAY) == []
    record = _record(settings, run.run_id)
    assert record.status == "data_quality_failure"
    assert "lacks declared column(s) ['support_calls']" in record.message


def test_the_cli_scores_the_same_way_without_airflow(champion, settings, capsys) -> None:
    from trainyard.cli import main
    from trainyard.core import storage
    from trainyard.data import predictions
    from trainyard.scoring.steps import ScoringRecord

    code = main(["score", PIPELINE, "--date", CLI_DAY.isoformat()])

    printed = capsys.readouterr()
    assert code == 0, printed.err
    record = ScoringRecord.model_validate_json(printed.out)
    uri = predictions.batch_uri(settings, PIPELINE, CLI_DAY, champion)
    assert record.status == "scored" and [d.uri for d in record.days] == [uri]
    assert len(storage.read_parquet(settings, uri)) == ROWS
    assert f"{CLI_DAY}: {ROWS} rows -> {uri}" in printed.err
