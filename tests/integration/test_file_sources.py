"""File sources on the session's SeaweedFS S3: CSV and Parquet, partition layouts, static files.

Each test lands raw files the way a team would (gzip CSV per hour, Hive-style Parquet folders,
one static CSV export) and ingests them with the example specs in docs/examples/pipelines.
"""

from __future__ import annotations

import gzip
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import REPO, loans_frame
from trainyard.core import storage
from trainyard.core.spec import parse_spec
from trainyard.data.snapshots import TrainingWindow, load_snapshot
from trainyard.data.sources import (
    MissingPartitionsError,
    RawDataError,
    ingest,
    partition_dates,
    resolve_window,
)
from trainyard_dev.churn import generate_day

EXAMPLES = REPO / "docs" / "examples" / "pipelines"
DAY = date(2025, 4, 1)


def _example(name: str, **source: object):
    """An example spec, its source moved under a prefix of this test's own."""
    data = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    data["source"].update(source)
    return parse_spec(data, Path(f"{name}.yaml"))


def _csv(frame: pd.DataFrame, delimiter: str = ",") -> bytes:
    return frame.to_csv(index=False, sep=delimiter).encode()


def _parquet(frame: pd.DataFrame) -> bytes:
    return storage.parquet_bytes(frame)


def _put(settings, key: str, body: bytes) -> None:
    storage.ensure_buckets(settings, [settings.raw_bucket])
    storage.put_bytes(settings, f"s3://{settings.raw_bucket}/{key}", body)


def _hour_frame(moment: datetime, rows: int = 40) -> pd.DataFrame:
    frame = generate_day(moment.date(), rows, seed=moment.hour)
    frame["customer_id"] = [f"H{moment:%Y%m%d%H}-{i:04d}" for i in range(rows)]
    frame["event_date"] = pd.Timestamp(moment)
    return frame


def test_hourly_gzip_csv_partitions_read_an_hours_window(settings) -> None:
    spec = _example("churn_hourly_csv", prefix="t_hourly")
    run_time = datetime(2025, 4, 2, 3, 20)  # hourly window of 12 ending 02:00 (offset 1 h)
    window = resolve_window(spec, run_time.date(), run_time=run_time)
    assert window.label() == "2025-04-01T15h..2025-04-02T02h"
    hours = window.hours()
    assert len(hours) == 12
    for moment in [hours[0] - timedelta(hours=1), *hours]:
        key = f"t_hourly/date={moment:%Y-%m-%d}/hour={moment:%H}/part-0.csv.gz"
        _put(settings, key, gzip.compress(_csv(_hour_frame(moment))))
    _put(settings, f"t_hourly/date={DAY}/hour=16/_SUCCESS", b"")  # markers are not data

    snapshot = ingest(spec, settings, window)

    assert snapshot.rows == 12 * 40 and snapshot.sources == 12
    assert snapshot.tags()["window_hours"] == "15:00 of the first day to 02:59 of the last"
    frame = load_snapshot(settings, snapshot.uri, snapshot.sha256)
    assert frame["event_date"].min() == pd.Timestamp("2025-04-01 15:00")
    assert frame["event_date"].max() == pd.Timestamp("2025-04-02 02:00")
    assert partition_dates(settings, settings.raw_bucket, "t_hourly", spec.source.layout) == [
        date(2025, 4, 1),
        date(2025, 4, 2),
    ]

    later = resolve_window(spec, run_time.date(), run_time=run_time + timedelta(hours=2))
    with pytest.raises(MissingPartitionsError) as error:
        ingest(spec, settings, later)
    assert error.value.missing == ["2025-04-02T03h", "2025-04-02T04h"]
    assert "2 raw partition(s) missing under s3://" in str(error.value)


def test_year_month_day_parquet_layout(settings) -> None:
    spec = _example("churn_ymd_parquet", prefix="t_ymd")
    days = [DAY + timedelta(days=i) for i in range(3)]
    for day in days:
        folder = f"t_ymd/year={day:%Y}/month={day:%m}/day={day:%d}"
        frame = generate_day(day, 200)
        _put(settings, f"{folder}/part-0.parquet", _parquet(frame.iloc[:120]))
        _put(settings, f"{folder}/part-1.parquet", _parquet(frame.iloc[120:]))

    snapshot = ingest(spec, settings, TrainingWindow(start=days[0], end=days[-1]))

    assert snapshot.rows == 600 and snapshot.sources == 6
    frame = load_snapshot(settings, snapshot.uri, snapshot.sha256)
    expected = pd.concat([generate_day(day, 200) for day in days], ignore_index=True)
    assert frame["customer_id"].tolist() == expected["customer_id"].tolist()
    # The declared columns first, in the schema's order, each with its normalised type.
    assert list(frame.columns) == list(spec.schema_.columns)
    assert str(frame["tenure_months"].dtype) == "float64"
    assert str(frame["churned"].dtype) == "Int64"


def test_the_same_rows_from_csv_or_parquet_give_the_same_snapshot(settings) -> None:
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["source"]["prefix"] = "t_same_pq"
    parquet = parse_spec(data, Path("churn.yaml"))
    csv = _example("churn_dt_csv", prefix="t_same_csv")
    days = [DAY + timedelta(days=i) for i in range(2)]
    for day in days:
        frame = generate_day(day, 300)
        frame.loc[frame.index[:7], "churned"] = pd.NA  # labels that have not arrived yet
        frame.loc[frame.index[3:9], "monthly_charges"] = float("nan")
        _put(settings, f"t_same_pq/date={day}/part-0000.parquet", _parquet(frame))
        _put(settings, f"t_same_csv/dt={day:%Y%m%d}/export.csv", _csv(frame, ";"))
    window = TrainingWindow(start=days[0], end=days[-1])

    from_parquet = ingest(parquet, settings, window)
    from_csv = ingest(csv, settings, window)

    assert from_csv.rows == from_parquet.rows == 600
    assert from_csv.sha256 == from_parquet.sha256


def test_a_malformed_csv_line_or_value_is_named(settings) -> None:
    spec = _example("churn_dt_csv", prefix="t_bad_csv")
    window = TrainingWindow(start=DAY, end=DAY)
    good = _csv(generate_day(DAY, 20), ";").decode().splitlines()
    key = f"t_bad_csv/dt={DAY:%Y%m%d}/export.csv"

    _put(settings, key, "\n".join([*good[:4], good[4] + ";extra", *good[5:]]).encode())
    with pytest.raises(RawDataError) as error:
        ingest(spec, settings, window)
    assert str(error.value) == (
        f"partition {DAY} file s3://{settings.raw_bucket}/{key} cannot be read as CSV: "
        "Expected 13 fields in line 5, saw 14"
    )

    frame = generate_day(DAY, 20).astype({"tenure_months": object})
    frame.loc[frame.index[6], "tenure_months"] = "twelve"
    _put(settings, key, _csv(frame, ";"))
    with pytest.raises(RawDataError) as error:
        ingest(spec, settings, window)
    assert str(error.value) == (
        f"partition {DAY} file s3://{settings.raw_bucket}/{key}: numeric feature column "
        "'tenure_months' must hold numbers; found 'twelve' (1 such value(s))"
    )


def test_a_static_csv_file_or_folder_ignores_the_window(settings) -> None:
    spec = _example("loans_static_csv", prefix="t_loans/applications.csv")
    _put(settings, "t_loans/applications.csv", _csv(loans_frame(300)))
    _put(settings, "t_loans/applications.csv.bak", b"not,the,file\n")
    any_window = TrainingWindow(start=DAY, end=DAY)

    snapshot = ingest(spec, settings, any_window)

    assert snapshot.rows == 300 and snapshot.sources == 1
    frame = load_snapshot(settings, snapshot.uri, snapshot.sha256)
    assert frame["application_id"].iloc[:2].tolist() == ["00000", "00001"]  # text, zeros kept
    assert set(frame["decision"]) == {"approved", "declined"}
    assert frame["income"].isna().sum() == 34 and frame["region"].isna().sum() == 24
    other_window = TrainingWindow(start=DAY, end=DAY + timedelta(3))
    assert ingest(spec, settings, other_window).sha256 == snapshot.sha256

    folder = _example("loans_static_csv", prefix="t_loans_parts")
    _put(settings, "t_loans_parts/a.csv", _csv(loans_frame(100)))
    _put(settings, "t_loans_parts/b.csv.gz", gzip.compress(_csv(loans_frame(50, start=100))))
    parts = ingest(folder, settings, any_window)
    assert parts.rows == 150 and parts.sources == 2

    missing = _example("loans_static_csv", prefix="t_loans_none/x.csv")
    with pytest.raises(RawDataError, match="no file s3://.*/t_loans_none/x.csv"):
        ingest(missing, settings, any_window)


def test_labels_land_again_in_a_csv_sources_own_partitions(settings) -> None:
    """The performance monitor reads labels through the source's format (CSV here)."""
    from trainyard.monitoring.steps import read_labels

    data = yaml.safe_load((EXAMPLES / "churn_dt_csv.yaml").read_text())
    data["source"]["prefix"] = "t_labels_csv"
    data.update(
        labels={"delay_days": 7},
        performance={"schedule": None, "metric": "accuracy", "max_drop": 0.03},
    )
    spec = parse_spec(data, Path("churn_dt_csv.yaml"))
    frame = generate_day(DAY, 30)
    frame["customer_id"] = [f"00{i:03d}" for i in range(30)]  # ids stay text
    frame["churned"] = frame["churned"].astype("Int64")
    frame.loc[:4, "churned"] = pd.NA  # not labelled yet
    _put(settings, f"t_labels_csv/dt={DAY:%Y%m%d}/part-0.csv", _csv(frame, ";"))
    _put(settings, f"t_labels_csv/dt={DAY:%Y%m%d}/_SUCCESS", b"")

    labels = read_labels(spec, settings, [DAY, DAY + timedelta(days=1)])

    assert labels["row_id"].tolist() == frame["customer_id"][5:].tolist()
    assert labels["label"].tolist() == frame["churned"][5:].tolist()


def test_headerless_latin1_tab_separated_csv_is_read_by_its_declared_options(settings) -> None:
    """``header: false`` with ``columns``, a non-UTF-8 ``encoding``, a tab delimiter."""
    frame = generate_day(DAY, 50)
    frame["region"] = frame["region"].where(frame.index % 5 != 0, "Île-de-France")
    columns = list(frame.columns)
    body = frame.to_csv(index=False, header=False, sep="\t").encode("latin-1")
    key = f"t_latin1/dt={DAY:%Y%m%d}/export.tsv"
    _put(settings, key, body)
    options = {"delimiter": "\t", "header": False, "columns": columns, "encoding": "latin-1"}
    spec = _example("churn_dt_csv", prefix="t_latin1", csv=options)
    window = TrainingWindow(start=DAY, end=DAY)

    snapshot = ingest(spec, settings, window)

    read = load_snapshot(settings, snapshot.uri, snapshot.sha256)
    assert snapshot.rows == 50
    assert read["region"].tolist() == frame["region"].tolist()
    assert read["customer_id"].tolist() == frame["customer_id"].tolist()
    # Read as UTF-8, the same bytes are refused naming the file (nothing half-read).
    as_utf8 = _example("churn_dt_csv", prefix="t_latin1", csv={**options, "encoding": "utf-8"})
    refused = f"file s3://{settings.raw_bucket}/{key} cannot be read as CSV: 'utf-8' codec can't"
    with pytest.raises(RawDataError, match=refused):
        ingest(as_utf8, settings, window)


def test_the_static_csv_example_trains_and_registers_a_random_forest(
    settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """loans_static_csv as shipped (a static CSV with missing values and a text target, a
    RandomForest with no ``skops_trusted_types``) through ``trainyard specs`` and ``run``: the
    model MLflow stored with skops loads back and predicts the text classes."""
    import mlflow
    from mlflow import MlflowClient

    from trainyard import cli

    data = yaml.safe_load((EXAMPLES / "loans_static_csv.yaml").read_text())
    data["source"]["prefix"] = "t_loans_train/applications.csv"
    data["model"]["registered_name"] = "t_loans_static_csv"
    assert "skops_trusted_types" not in data["model"]
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "loans_static_csv.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    monkeypatch.setenv(
        "TRAINYARD_EXPECTATIONS_DIR", str(REPO / "docs" / "examples" / "expectations")
    )
    applications = loans_frame(800)
    _put(settings, "t_loans_train/applications.csv", _csv(applications))

    assert cli.main(["specs"]) == 0
    assert cli.main(["run", "loans_static_csv", "--reason", "test: static example"]) == 0

    champion = MlflowClient().get_model_version_by_alias("t_loans_static_csv", "champion")
    model = mlflow.sklearn.load_model("models:/t_loans_static_csv@champion")
    features = applications.drop(columns=["decision"]).head(20)
    assert set(model.predict(features)) <= {"approved", "declined"}
    assert champion.tags["snapshot_uri"].startswith(f"s3://{settings.artifacts_bucket}/")
