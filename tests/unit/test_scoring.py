"""Batch scoring's pure parts: which days, the champion's columns, the predictions it logs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from trainyard.core.spec import SpecError, parse_spec
from trainyard.data.snapshots import WindowError
from trainyard.scoring.steps import ChampionRef, feature_problem, predict, scoring_days

SHIPPED = REPO / "include" / "pipelines"


def _spec(**scoring):
    data = yaml.safe_load((SHIPPED / "churn.yaml").read_text())
    data["scoring"].update(scoring)
    return parse_spec(data, Path("churn.yaml"))


def test_scoring_days_end_the_offset_before_the_run_day() -> None:
    assert scoring_days(_spec(), date(2026, 3, 5)) == [date(2026, 3, 4)]
    assert scoring_days(_spec(days=3, end_offset_days=0), date(2026, 3, 5)) == [
        date(2026, 3, 3),
        date(2026, 3, 4),
        date(2026, 3, 5),
    ]
    assert scoring_days(_spec(), date(2026, 3, 5), date(2026, 2, 1), 2) == [
        date(2026, 1, 31),
        date(2026, 2, 1),
    ]
    with pytest.raises(WindowError, match="after the run day"):
        scoring_days(_spec(), date(2026, 3, 5), date(2026, 3, 6))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["schema"].pop("id_column"), "needs schema.id_column"),
        (lambda d: d["scoring"].update(days=0), "field 'scoring.days'"),
        (lambda d: d["scoring"].update(output="s3://x"), "field 'scoring.output'"),
    ],
)
def test_a_bad_scoring_section_is_refused_naming_the_field(mutate, message: str) -> None:
    data = yaml.safe_load((SHIPPED / "churn.yaml").read_text())
    mutate(data)
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        parse_spec(data, Path("churn.yaml"))


@pytest.fixture(scope="module")
def fitted():
    from trainyard.training.steps import fit
    from trainyard_dev.churn import generate_day

    spec = _spec()
    model = fit(spec, generate_day(date(2026, 1, 1), 1500)).model
    return spec, model


def test_predictions_are_the_models_own_probabilities_and_classes(fitted) -> None:
    from trainyard.data.predictions import BASE_COLUMNS
    from trainyard_dev.churn import Knobs, generate_day

    spec, model = fitted
    batch = generate_day(date(2026, 2, 1), 300, Knobs(labels_missing=True))
    at = datetime(2026, 2, 2, 4, tzinfo=UTC)

    scored = predict(spec, model, batch, ChampionRef(model_name="churn", version="7"), "r1", at)

    features = batch[list(spec.schema_.features)].astype(
        dict.fromkeys(spec.schema_.numeric_features, "float64")
    )
    assert list(scored.columns) == [*BASE_COLUMNS, "proba_0", "proba_1"]
    assert scored["row_id"].tolist() == batch["customer_id"].tolist()
    assert scored["prediction"].tolist() == model.predict(features).tolist()
    assert scored["proba_1"].tolist() == model.predict_proba(features)[:, 1].tolist()
    assert set(scored["model_version"]) == {"7"} and set(scored["run_id"]) == {"r1"}


def test_a_column_the_champion_needs_is_named(fitted) -> None:
    from trainyard_dev.churn import Knobs, generate_day

    spec, model = fitted
    batch = generate_day(date(2026, 2, 1), 10, Knobs(corruption=("missing_column",)))
    assert feature_problem(spec, model, batch) == (
        "the batch lacks feature column(s) ['support_calls'] the champion needs"
    )
    assert feature_problem(spec, model, generate_day(date(2026, 2, 1), 10)) is None


def test_rows_to_score_may_lack_the_target_but_not_a_feature() -> None:
    from trainyard.data.sources import RawDataError, check_frame
    from trainyard_dev.churn import generate_day

    spec = _spec()
    rows = generate_day(date(2026, 2, 1), 20).drop(columns=["churned"])
    assert len(check_frame(spec, rows, "batch", require_target=False)) == 20
    with pytest.raises(RawDataError, match=r"batch: lacks declared column\(s\) \['churned'\]"):
        check_frame(spec, rows, "batch")
    with pytest.raises(RawDataError, match=r"lacks declared column\(s\) \['region'\]"):
        check_frame(spec, rows.drop(columns=["region"]), "batch", require_target=False)


def test_the_suite_for_scoring_forgets_the_target_only() -> None:
    import json

    from trainyard.data.validation import suite_without_column

    suite = json.loads((REPO / "include" / "expectations" / "churn.json").read_text())
    suite["name"] = "churn"

    reduced = suite_without_column(suite, "churned")

    assert reduced["name"] == "churn-without-churned"
    assert len(reduced["expectations"]) == len(suite["expectations"]) - 2
    assert not any(e["kwargs"].get("column") == "churned" for e in reduced["expectations"])
    (columns,) = [
        e["kwargs"]["column_set"]
        for e in reduced["expectations"]
        if e["type"] == "expect_table_columns_to_match_set"
    ]
    assert "churned" not in columns and "support_calls" in columns


def test_a_snapshot_scored_in_pieces_equals_the_whole_batch_scored_at_once(
    fitted, tmp_path: Path
) -> None:
    import pandas as pd

    from trainyard.data.snapshots import SnapshotFile, SnapshotWriter
    from trainyard.data.sources import check_frame
    from trainyard.scoring.steps import score_file
    from trainyard_dev.churn import Knobs, generate_day

    spec, model = fitted
    batch = check_frame(
        spec, generate_day(date(2026, 2, 1), 300, Knobs(labels_missing=True)), "batch", False
    )
    writer = SnapshotWriter(tmp_path)
    writer.add(batch, "batch")
    writer.close()
    champion, at = ChampionRef(model_name="churn", version="7"), datetime(2026, 2, 2, tzinfo=UTC)
    snapshot = SnapshotFile(writer.path)

    rows = score_file(spec, model, snapshot, champion, "r1", at, tmp_path / "p.parquet", rows=64)

    whole = predict(spec, model, snapshot.read(), champion, "r1", at)
    assert rows == 300
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), whole)
