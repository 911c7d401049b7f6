"""Bounded memory: the snapshot file is written piece by piece, and ``max_training_rows``."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.support import REPO
from trainyard.core.spec import load_spec
from trainyard.data import snapshots
from trainyard.data.snapshots import SnapshotTypeError, SnapshotWriter
from trainyard.data.sources import normalise
from trainyard.training import modeling
from trainyard_dev.churn import generate_day

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")


def _rows() -> pd.DataFrame:
    frame = pd.concat([generate_day(date(2026, 3, d), 700) for d in range(1, 4)])
    return normalise(CHURN, frame, "test")


def _written(directory: Path, pieces: list[pd.DataFrame]) -> tuple[str, int]:
    directory.mkdir()
    writer = SnapshotWriter(directory)
    for piece in pieces:
        writer.add(piece, "piece")
    return writer.close(), writer.rows


def test_the_same_rows_cut_into_other_pieces_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "ROW_GROUP_ROWS", 500)  # several row groups
    rows = _rows()
    whole, count = _written(tmp_path / "a", [rows])
    cuts = [rows.iloc[i : i + 333] for i in range(0, len(rows), 333)]
    pieces, _ = _written(tmp_path / "b", [c.reset_index(drop=True) for c in cuts])

    assert count == 2100 and pieces == whole
    parquet = pq.ParquetFile(tmp_path / "a" / "snapshot.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(5)] == [500] * 4 + [100]
    assert hashlib.sha256((tmp_path / "a" / "snapshot.parquet").read_bytes()).hexdigest() == whole
    pd.testing.assert_frame_equal(parquet.read().to_pandas(), rows)


def test_a_piece_with_other_column_types_is_refused_naming_it(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path)
    rows = _rows()
    writer.add(rows.iloc[:10], "first file")
    changed = rows.iloc[10:20].assign(contract=range(10))
    with pytest.raises(SnapshotTypeError, match="^second file: its columns .* do not fit"):
        writer.add(changed.assign(contract=changed["contract"].astype("float64")), "second file")


def test_max_training_rows_samples_the_training_side_only_and_says_so() -> None:
    frame = pd.concat([generate_day(date(2026, 3, d), 800) for d in range(1, 6)], ignore_index=True)
    full = modeling.split(CHURN, frame)
    capped = CHURN.model_copy(
        update={"model": CHURN.model.model_copy(update={"max_training_rows": 1000})}
    )
    first, again = modeling.split(capped, frame), modeling.split(capped, frame)

    assert len(first.x_train) == 1000 and list(first.x_train.index) == list(again.x_train.index)
    assert first.x_train.index.is_monotonic_increasing
    assert set(first.x_train.index) <= set(full.x_train.index)
    assert first.x_test.index.equals(full.x_test.index)  # the holdout keeps every row
    assert first.sample_note(CHURN.split.seed) == (
        f"1000 of {len(full.x_train)} training rows (model.max_training_rows, seed 42)"
    )
    assert full.sample_note(42) is None


def _capped(rows: int) -> object:
    return CHURN.model_copy(
        update={"model": CHURN.model.model_copy(update={"max_training_rows": rows})}
    )


@pytest.mark.parametrize("max_training_rows", [None, 1000])
def test_a_split_read_in_pieces_equals_the_whole_frame_split(
    tmp_path: Path, max_training_rows: int | None
) -> None:
    rows = _rows().assign(churned=lambda f: f["churned"].mask(f.index % 17 == 0))  # unlabelled
    spec = _capped(max_training_rows) if max_training_rows else CHURN
    _written(tmp_path / "s", [rows.reset_index(drop=True)])
    snapshot = snapshots.SnapshotFile(tmp_path / "s" / "snapshot.parquet")

    whole = modeling.split(spec, snapshot.read())
    pieces = modeling.split_rows(spec, snapshot.columns, lambda c: snapshot.batches(c, rows=128))
    holdout = modeling.split_rows(
        spec, snapshot.columns, lambda c: snapshot.batches(c, rows=128), holdout_only=True
    )

    for name in ("x_train", "x_test"):
        pd.testing.assert_frame_equal(getattr(pieces, name), getattr(whole, name))
    for name in ("y_train", "y_test"):
        pd.testing.assert_series_equal(getattr(pieces, name), getattr(whole, name))
    assert pieces.dropped_unlabeled == whole.dropped_unlabeled > 0
    assert pieces.train_rows_available == whole.train_rows_available
    assert pieces.sample_note(42) == whole.sample_note(42)
    assert (len(pieces.x_train) == 1000) == (max_training_rows == 1000)
    pd.testing.assert_frame_equal(holdout.x_test, whole.x_test)
    assert holdout.x_train.empty and holdout.y_train.empty


def test_a_split_in_pieces_refuses_what_the_whole_frame_refuses(tmp_path: Path) -> None:
    rows = _rows().assign(churned=pd.array([0] * 2100, dtype="Int64"))
    _written(tmp_path / "s", [rows.reset_index(drop=True)])
    snapshot = snapshots.SnapshotFile(tmp_path / "s" / "snapshot.parquet")
    with pytest.raises(modeling.TrainingDataError, match="holds a single class"):
        modeling.split_rows(CHURN, snapshot.columns, lambda c: snapshot.batches(c, rows=100))
    with pytest.raises(modeling.TrainingDataError, match="lacks columns .*'region'"):
        modeling.split_rows(CHURN, [c for c in snapshot.columns if c != "region"], lambda c: [])


def test_the_training_sample_is_seeded_by_split_seed() -> None:
    frame = pd.concat([generate_day(date(2026, 3, d), 800) for d in range(1, 6)], ignore_index=True)
    capped = _capped(1000)
    reseeded = capped.model_copy(update={"split": capped.split.model_copy(update={"seed": 7})})
    first, other = modeling.split(capped, frame), modeling.split(reseeded, frame)

    assert first.sample_note(42).endswith("(model.max_training_rows, seed 42)")
    assert set(first.x_train.index) != set(other.x_train.index)


#: The shipped churn suite plus every other kind a whole-column statistic decides.
WHOLE_COLUMN_KINDS = [
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
    {
        "type": "expect_column_mean_to_be_between",
        "kwargs": {"column": "monthly_charges", "min_value": 0, "max_value": 60},
    },
    {
        "type": "expect_column_median_to_be_between",
        "kwargs": {"column": "days_since_last_login", "min_value": 100},
    },
    {
        "type": "expect_column_stdev_to_be_between",
        "kwargs": {"column": "total_charges", "max_value": 1},
    },
    {
        "type": "expect_column_proportion_of_unique_values_to_be_between",
        "kwargs": {"column": "region", "min_value": 0.5},
    },
    {
        "type": "expect_column_pair_values_a_to_be_greater_than_b",
        "kwargs": {"column_A": "total_charges", "column_B": "monthly_charges", "or_equal": True},
    },
    {
        "type": "expect_compound_columns_to_be_unique",
        "kwargs": {"column_list": ["customer_id", "event_date"]},
    },
    {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "data_usage_gb", "mostly": 0.99},
        "severity": "warning",
    },
    {"type": "expect_column_to_exist", "kwargs": {"column": "plan", "column_index": 3}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 2000}},
]


#: The other row-local kinds that run on pieces of rows (between, in set, not null: above).
ROW_LOCAL_KINDS = [
    {"type": "expect_column_values_to_not_be_in_set",
     "kwargs": {"column": "region", "value_set": ["mars"]}},
    {"type": "expect_column_values_to_match_regex",
     "kwargs": {"column": "customer_id", "regex": r"^C\d{8}-\d{6}$"}},
    {"type": "expect_column_values_to_not_match_regex",
     "kwargs": {"column": "contract", "regex": "^life"}},
    {"type": "expect_column_value_lengths_to_equal",
     "kwargs": {"column": "payment_method", "value": 12}},
    {"type": "expect_column_values_to_be_null",
     "kwargs": {"column": "support_calls", "mostly": 0.05}},
]  # fmt: skip


def _failing_rows() -> pd.DataFrame:
    """Churn rows broken in the ways the expectations above and the shipped suite catch."""
    rows = _rows().reset_index(drop=True)
    rows.loc[5, "customer_id"] = rows.loc[6, "customer_id"]  # a duplicate id
    rows.loc[10:14, "monthly_charges"] = -3.0  # out of range, and a mean pulled down
    rows.loc[20:60, "data_usage_gb"] = None  # 2% missing: a warning
    rows.loc[70, "contract"] = "lifetime"  # not in the value set
    rows.loc[80:82, "tenure_months"] = pd.NA  # nulls in a not-null column
    # Across many pieces of rows: more unexpected values than a result lists (20), and nulls
    # that the range check skips while the null check counts them.
    rows.loc[range(90, 2000, 37), "support_calls"] = 99
    rows.loc[range(95, 2000, 53), "support_calls"] = pd.NA
    rows.loc[range(100, 2000, 41), "region"] = "mars"
    return rows


def test_validating_in_passes_and_pieces_gives_the_whole_frame_results(tmp_path: Path) -> None:
    import json

    from trainyard.data.validation import plan_passes, run_suite, run_suite_on_snapshot

    suite = json.loads((REPO / "include" / "expectations" / "churn.json").read_text())
    expectations = suite["expectations"] + WHOLE_COLUMN_KINDS + ROW_LOCAL_KINDS
    document = {"name": "churn", "expectations": expectations}
    rows = _failing_rows()
    _written(tmp_path / "s", [rows])
    snapshot = snapshots.SnapshotFile(tmp_path / "s" / "snapshot.parquet")
    row_bytes = snapshot.row_bytes(10_000)
    budget = 2 * 8 * len(rows)  # two numeric columns' worth: each text column alone
    passes = plan_passes(document["expectations"], row_bytes, snapshot.rows, budget)

    whole, whole_failures, whole_warnings = run_suite(rows, document, tmp_path / "one")
    split, failures, warnings = run_suite_on_snapshot(snapshot, document, tmp_path / "many", budget)

    (pieced,) = [p for p in passes if p.piece_rows is not None]
    assert len(rows) // pieced.piece_rows >= 10  # many pieces of rows
    assert len(passes) > 5 and len(split["meta"]["passes"]) == len(passes)
    assert (failures, warnings) == (whole_failures, whole_warnings)
    failed = {f.expectation for f in failures}
    assert {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_stdev_to_be_between",
        "expect_column_proportion_of_unique_values_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_compound_columns_to_be_unique",
        "expect_column_to_exist",
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_not_match_regex",
        "expect_column_value_lengths_to_equal",
        "expect_column_values_to_be_null",
    } <= failed
    assert "data_usage_gb" in [w.column for w in warnings]
    region = next(f for f in failures if f.column == "region")
    assert region.unexpected_count == len(range(100, 2000, 41)) and region.sample[0] == "mars"
    assert "region: expect_column_values_to_be_in_set" in region.describe()

    def verdicts(result: dict) -> list:  # GX's order is its own: compare in the suite's
        found = {json.dumps(r["expectation_config"]["kwargs"], sort_keys=True)
                 + r["expectation_config"]["type"]: (r["success"], r["result"])
                 for r in result["results"]}  # fmt: skip
        return sorted(found.items())

    assert len(split["results"]) == len(document["expectations"])
    assert verdicts(split) == verdicts(whole)
    calls = next(r["result"] for r in split["results"]
                 if r["expectation_config"]["type"] == "expect_column_values_to_be_between"
                 and r["expectation_config"]["kwargs"]["column"] == "support_calls")  # fmt: skip
    assert len(calls["partial_unexpected_list"]) == 20 and calls["missing_count"] > 0
    assert split["statistics"] == whole["statistics"] and split["success"] is False
    for docs in ("one", "many"):  # one Data Docs page either way
        site = tmp_path / docs / "gx" / "uncommitted" / "data_docs" / "local_site"
        assert len(list((site / "validations").rglob("*.html"))) == 1


def test_passes_respect_the_memory_budget() -> None:
    from trainyard.data.validation import ValidationPass, plan_passes

    # Bytes per row as pandas holds them: text columns take several times a number's 8.
    row_bytes = {"id": 70.0, "plan": 65.0, "a": 8.0, "b": 8.0, "c": 8.0}
    expectations = [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "plan",
                                                                  "value_set": ["x"]}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "b", "min_value": 0}},
        {"type": "expect_column_median_to_be_between", "kwargs": {"column": "c", "min_value": 0}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    ]  # fmt: skip
    rows, budget = 1_000_000, 20_000_000

    passes = plan_passes(expectations, row_bytes, rows, budget)

    assert passes == [
        ValidationPass((0, 5), ("id",)),  # 70 MB: over the budget, alone, every row
        ValidationPass((3, 4), ("b", "c")),  # 16 MB of whole columns
        ValidationPass((1, 2), ("plan", "a"), piece_rows=budget // 73),  # row-local: pieces
    ]
    for part in passes:
        per_row = sum(row_bytes[c] for c in part.columns or row_bytes)
        held = per_row * (part.piece_rows or rows)
        assert held <= budget or (part.columns and len(part.columns) == 1)
    # Within the budget: one whole-frame pass, as before.
    assert plan_passes(expectations, row_bytes, 100_000, budget) == [
        ValidationPass(tuple(range(6)), None)
    ]


def test_passes_give_each_expectation_its_whole_columns() -> None:
    from trainyard.data.validation import ValidationPass, plan_passes

    columns = ["a", "b", "c", "d"]
    row_bytes = dict.fromkeys(columns, 1.0)
    expectations = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "b"}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "a", "min_value": 0}},
        {
            "type": "expect_column_pair_values_to_be_equal",
            "kwargs": {"column_A": "c", "column_B": "d"},
        },
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": columns}},
    ]
    assert plan_passes(expectations, row_bytes, rows=10, budget=40) == [
        ValidationPass(tuple(range(6)), None)
    ]
    assert plan_passes(expectations, row_bytes, rows=10, budget=20) == [
        ValidationPass((0, 2, 3), ("b", "a")),
        ValidationPass((4,), ("c", "d")),
        ValidationPass((1,), ("a",), piece_rows=10),
        ValidationPass((5,), None, names_only=True),
    ]
    conditional = {"column": "a", "row_condition": "b > 1", "condition_parser": "pandas"}
    anywhere = [
        *expectations,
        {"type": "expect_column_values_to_not_be_null", "kwargs": conditional},
    ]
    assert plan_passes(anywhere, row_bytes, rows=10, budget=10) == [
        ValidationPass(tuple(range(7)), None)
    ]
