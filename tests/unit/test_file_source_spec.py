"""File-source settings in the spec, partition layouts, hour windows and type normalisation."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import REPO
from trainyard.core.spec import SpecError, load_all_specs, parse_spec
from trainyard.data.layouts import Layout, LayoutError
from trainyard.data.sources import RawDataError, normalise, resolve_window
from trainyard.training.preflight import preflight

EXAMPLES = REPO / "docs" / "examples" / "pipelines"


def _churn(**source: object) -> dict:
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["source"].update(source)
    return data


@pytest.mark.parametrize(
    ("pattern", "moment", "folder", "day_folder"),
    [
        ("date=YYYY-MM-DD", datetime(2026, 6, 1), "date=2026-06-01/", "date=2026-06-01/"),
        ("year=YYYY/month=MM/day=DD", datetime(2026, 6, 1), "year=2026/month=06/day=01/",
         "year=2026/month=06/day=01/"),
        ("dt=YYYYMMDD", datetime(2026, 6, 1), "dt=20260601/", "dt=20260601/"),
        ("date=YYYY-MM-DD/hour=HH", datetime(2026, 6, 1, 7), "date=2026-06-01/hour=07/",
         "date=2026-06-01/"),
    ],
)  # fmt: skip
def test_layouts_format_and_parse_folders(pattern, moment, folder, day_folder) -> None:
    layout = Layout(pattern)
    assert layout.folder(moment) == folder
    assert layout.day_folder(moment.date()) == day_folder
    assert layout.moment_of(folder + "part-0.csv") == moment
    assert layout.moment_of("other/" + folder) is None


def test_a_folder_that_is_not_a_date_is_not_a_partition() -> None:
    assert Layout("year=YYYY/month=MM/day=DD").moment_of("year=2026/month=13/day=01/x") is None


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("date=YYYY-MM", "must hold DD exactly once"),
        ("HH/YYYYMMDD", "HH must come after the date"),
        ("d=%Y%m%d", "may hold only letters"),
    ],
)
def test_bad_layouts_say_why(pattern: str, why: str) -> None:
    with pytest.raises(LayoutError, match=why):
        Layout(pattern)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["source"].update(partitioning="date=YYYY"), "source.files.partitioning"),
        (lambda d: d["source"].update(format="xlsx"), "field 'source.files.format'"),
        (lambda d: d["source"].update(csv={"delimiter": ";;"}), "source.files.csv.delimiter"),
        (lambda d: d["source"].update(csv={"encoding": "utf-9"}), "unknown encoding 'utf-9'"),
        (lambda d: d["source"].update(csv={"header": False}), "need 'columns'"),
        (lambda d: d.update(window={"hours": 6}), "window.hours needs hourly partitions"),
        (lambda d: d["schema"].update(dtypes={"region": "colour"}), "field 'schema.dtypes.region'"),
    ],
)
def test_invalid_file_sources_name_the_field(mutate, expected: str) -> None:
    data = _churn()
    mutate(data)
    with pytest.raises(SpecError, match="churn.yaml") as error:
        parse_spec(data, Path("churn.yaml"))
    assert expected in str(error.value)


def test_an_hours_window_cannot_also_set_days() -> None:
    data = _churn(partitioning="date=YYYY-MM-DD/hour=HH")
    data["window"] = {"hours": 6, "days": 2}
    with pytest.raises(SpecError, match="set either days"):
        parse_spec(data, Path("churn.yaml"))


def test_the_first_source_kind_still_reads_as_daily_parquet_files() -> None:
    data = _churn()
    data["source"] = {"kind": "partitioned_parquet", "prefix": "churn"}
    source = parse_spec(data, Path("churn.yaml")).source
    assert (source.kind, source.format) == ("files", "parquet")
    assert source.partitioning == "date=YYYY-MM-DD"


def test_hour_windows_end_before_the_run_hour_or_with_window_end() -> None:
    spec = parse_spec(_churn(partitioning="dt=YYYYMMDD/h=HH") | {"window": {"hours": 3}},
                      Path("churn.yaml"))  # fmt: skip
    window = resolve_window(spec, date(2026, 6, 2), run_time=datetime(2026, 6, 2, 1, 30))
    assert [h.hour for h in window.hours()] == [22, 23, 0]
    assert (window.start, window.end) == (date(2026, 6, 1), date(2026, 6, 2))
    assert window.label() == "2026-06-01T22h..2026-06-02T00h"
    manual = resolve_window(spec, date(2026, 6, 2), window_end=date(2026, 6, 1))
    assert [h.hour for h in manual.hours()] == [21, 22, 23]
    whole_days = resolve_window(spec, date(2026, 6, 2), window_days=2)
    assert whole_days.whole_days and len(whole_days.hours()) == 48


def test_normalise_gives_one_type_per_column_whatever_the_file_said() -> None:
    spec = parse_spec(_churn(), Path("churn.yaml"))
    from_parquet = pd.DataFrame(
        {
            "customer_id": ["007", "008"],
            "event_date": [date(2026, 6, 1), date(2026, 6, 1)],
            "tenure_months": pd.array([3, 4], dtype="int32"),
            "monthly_charges": [1.5, None],
            "total_charges": [1.0, 2.0],
            "support_calls": [0, 1],
            "data_usage_gb": [1.0, 2.0],
            "days_since_last_login": [1.0, 2.0],
            "contract": ["a", None],
            "payment_method": ["x", "y"],
            "internet_service": ["dsl", "dsl"],
            "region": [1, 2],
            "churned": pd.array([1, None], dtype="Int64"),
            "undeclared": ["kept", "kept"],
        }
    )
    from_csv = from_parquet.astype(str).replace({"None": None, "<NA>": None, "nan": None})
    from_csv["event_date"] = ["2026-06-01", "2026-06-01"]
    from_csv["churned"] = [1.0, float("nan")]
    a, b = normalise(spec, from_parquet, "p"), normalise(spec, from_csv, "c")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == [*spec.schema_.columns, "undeclared"]
    assert a["region"].tolist() == ["1", "2"] and a["contract"].tolist() == ["a", None]


def test_a_value_that_does_not_convert_names_the_column() -> None:
    data = _churn()
    data["schema"]["dtypes"] = {"region": "integer"}
    spec = parse_spec(data, Path("churn.yaml"))
    frame = pd.DataFrame({c: ["1"] for c in spec.schema_.columns})
    frame = frame.assign(event_date="2026-06-01", region="north")
    expected = "p: column 'region' must hold integer values; found 'north' (1 such value(s))"
    with pytest.raises(RawDataError, match=re.escape(expected)):
        normalise(spec, frame, "p")


def test_example_specs_load_and_pass_preflight() -> None:
    specs = load_all_specs(EXAMPLES)
    assert {s.source.kind for s in specs} >= {"files"}
    for spec in specs:
        preflight(spec, EXAMPLES / f"{spec.name}.yaml")


def _sql(**source: object) -> dict:
    data = yaml.safe_load((EXAMPLES / "churn_sql.yaml").read_text())
    data["source"].update(source)
    return data


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"conn_id": "warehouse"}, "set exactly one of url_env and conn_id"),
        ({"url_env": None}, "set exactly one of url_env and conn_id"),
        ({"url_env": "lower-case"}, "field 'source.sql.url_env'"),
        ({"query": "SELECT * FROM t WHERE ts >= :window_start"}, "query names :window_start only"),
        ({"chunk_rows": 10}, "field 'source.sql.chunk_rows'"),
    ],
)
def test_invalid_sql_sources_name_the_field(source: dict, expected: str) -> None:
    with pytest.raises(SpecError, match="churn_sql.yaml") as error:
        parse_spec(_sql(**source), Path("churn_sql.yaml"))
    assert expected in str(error.value)


def test_a_sql_query_without_bounds_is_static_and_casts_are_not_bounds() -> None:
    windowed = parse_spec(_sql(), Path("churn_sql.yaml")).source
    assert windowed.windowed
    static = parse_spec(_sql(query="SELECT a::text, b FROM t"), Path("churn_sql.yaml")).source
    assert not static.windowed
