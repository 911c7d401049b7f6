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
