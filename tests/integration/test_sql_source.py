"""The SQL source on the local PostgreSQL (a database created for this module and dropped after).

Needs PostgreSQL at TRAINYARD_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres,
a role that may create databases); without it the module is skipped, except with CI=true, where
it fails (tests.support.warehouse_database).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import REPO, customer_events, insert_rows, warehouse_database
from trainyard.core import storage
from trainyard.core.spec import parse_spec
from trainyard.data.snapshots import TrainingWindow, load_snapshot
from trainyard.data.sources import EmptyWindowError, RawDataError, ingest
from trainyard.data.sql import SqlSourceError

pytestmark = pytest.mark.postgres

EXAMPLE = REPO / "docs" / "examples" / "pipelines" / "churn_sql.yaml"
DAYS = [date(2025, 5, 1) + timedelta(days=i) for i in range(3)]
ROWS = 700  # per day; chunks of 1000 rows split a two-day window in two


def _rows(day: date) -> pd.DataFrame:
    frame = customer_events(day, ROWS)
    frame.loc[frame.index[:5], "churned"] = pd.NA
    return frame


@pytest.fixture(scope="module")
def warehouse() -> Iterator[str]:
    """A fresh database holding ``customer_events``; its SQLAlchemy URL. Dropped afterwards."""
    with warehouse_database("trainyard_sql") as url:
        for day in DAYS[:2]:
            insert_rows(url, _rows(day))
        yield url


def _spec(**source: object):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["source"].update({"url_env": "TRAINYARD_TEST_WAREHOUSE_URL", "chunk_rows": 1000, **source})
    return parse_spec(data, Path("churn_sql.yaml"))


@pytest.fixture
def spec(warehouse: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAINYARD_TEST_WAREHOUSE_URL", warehouse)
    return _spec()


@pytest.fixture
def statements() -> Iterator[list[tuple[str, object]]]:
    """Every statement sent to a database while the test runs, with its parameters."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def test_a_window_reads_its_rows_by_bound_parameters_in_chunks(
    spec, settings, warehouse: str, statements
) -> None:
    window = TrainingWindow(start=DAYS[0], end=DAYS[1])

    snapshot = ingest(spec, settings, window)

    assert snapshot.rows == 2 * ROWS
    frame = load_snapshot(settings, snapshot.uri, snapshot.sha256)
    assert frame["event_date"].min() == pd.Timestamp("2025-05-01 00:00:00")
    assert str(frame["event_date"].dtype) == "datetime64[ns]"  # timestamptz -> naive UTC
    # The window is never part of the statement: only the parameters carry it.
    (statement, parameters), *_ = [s for s in statements if "customer_events" in s[0]]
    assert statement.strip() == spec.source.query.strip().replace(
        ":window_start", "%(window_start)s"
    ).replace(":window_end", "%(window_end)s")
    assert "2025" not in statement
    assert parameters == {
        "window_start": datetime(2025, 5, 1),
        "window_end": datetime(2025, 5, 3),
    }

    # The same rows as Parquet files give the same snapshot.
    data = yaml.safe_load(EXAMPLE.read_text())
    data["source"] = {"kind": "files", "prefix": "t_sql_same", "partitioning": "date=YYYY-MM-DD"}
    as_files = parse_spec(data, Path("churn_sql.yaml"))
    for day in DAYS[:2]:
        key = f"s3://{settings.raw_bucket}/t_sql_same/date={day}/part-0.parquet"
        rows = _rows(day).rename(columns={"event_time": "event_date"})
        storage.put_bytes(settings, key, storage.parquet_bytes(rows))
    assert ingest(as_files, settings, window).sha256 == snapshot.sha256


def test_an_incremental_window_picks_up_new_rows(spec, settings, warehouse: str) -> None:
    window = TrainingWindow.ending(DAYS[2], 2)
    with pytest.raises(EmptyWindowError):
        ingest(spec, settings, TrainingWindow(start=DAYS[2], end=DAYS[2]))
    before = ingest(spec, settings, window)
    assert before.rows == ROWS

    insert_rows(warehouse, _rows(DAYS[2]))
    after = ingest(spec, settings, window)

    assert after.rows == 2 * ROWS and after.sha256 != before.sha256
    assert ingest(spec, settings, window).sha256 == after.sha256


def test_an_hours_window_crossing_midnight_reads_exactly_its_hours(spec, settings) -> None:
    window = TrainingWindow.ending_hours(datetime(2025, 5, 2, 1), 4)  # 22:00 to 01:59

    snapshot = ingest(spec, settings, window)

    rows = pd.concat([_rows(day) for day in DAYS[:2]])
    inside = rows[(rows["event_time"] >= datetime(2025, 5, 1, 22))
                  & (rows["event_time"] < datetime(2025, 5, 2, 2))]  # fmt: skip
    frame = load_snapshot(settings, snapshot.uri, snapshot.sha256)
    assert snapshot.rows == len(inside) > 0
    assert frame["customer_id"].tolist() == inside["customer_id"].tolist()


def test_bad_values_and_bad_queries_are_named(spec, settings, monkeypatch) -> None:
    window = TrainingWindow(start=DAYS[0], end=DAYS[1])
    # One bad value, in row 1301 of 1400: the second chunk of 1000 rows is named.
    many = "CASE WHEN customer_id = 'C20250502-000600' THEN 'many' ELSE tenure_months::text END"
    wrong = spec.source.query.replace("tenure_months,", f"{many} AS tenure_months,", 1)
    with pytest.raises(RawDataError) as error:
        ingest(_spec(query=wrong), settings, window)
    assert str(error.value) == (
        "SQL query on $TRAINYARD_TEST_WAREHOUSE_URL (SELECT customer_id, event_time AS "
        "event_date, CASE WHEN cust...) rows 1001-1400: numeric feature column "
        "'tenure_months' must hold numbers; found 'many' (1 such value(s))"
    )

    missing = spec.source.query.replace("FROM customer_events", "FROM no_such_table")
    with pytest.raises(SqlSourceError, match='failed: relation "no_such_table" does not exist'):
        ingest(_spec(query=missing), settings, window)

    monkeypatch.delenv("TRAINYARD_TEST_WAREHOUSE_URL")
    with pytest.raises(SqlSourceError, match="TRAINYARD_TEST_WAREHOUSE_URL .* is not set"):
        ingest(spec, settings, window)

    undefined = _spec(url_env=None, conn_id="no_such_warehouse")
    with pytest.raises(SqlSourceError) as error:
        ingest(undefined, settings, window)
    assert str(error.value) == (
        "SQL query on Airflow connection 'no_such_warehouse' (SELECT customer_id, event_time AS "
        "event_date, tenure_months,...): no such connection (source.conn_id); define it with "
        "AIRFLOW_CONN_NO_SUCH_WAREHOUSE, the Airflow UI or a secrets backend"
    )
