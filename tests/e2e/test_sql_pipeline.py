"""End to end: a pipeline whose source is a SQL query behind an Airflow connection id.

The test-only spec ``churn_sql_conn`` names ``conn_id: trainyard_test_warehouse``; this module
creates a PostgreSQL database on the local server (dropped after), defines the connection the
way a deployment does, and runs the training DAG and the drift monitor with ``dag.test()``: the
tasks resolve the connection through Airflow (``BaseHook.get_connection``, the code every
task runs), read the query's window through its bound parameters, and the drift monitor compares
the champion's training rows with the newest day's rows of the same query.

Needs PostgreSQL at TRAINYARD_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
without it the module is skipped, except with CI=true, where it fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from tests.support import (
    DagRunResult,
    champion_of,
    customer_events,
    dag_runs,
    delete_dag_run,
    insert_rows,
    make_champion,
    model_versions,
    warehouse_database,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PIPELINE = "churn_sql_conn"
TRAIN_DAG = f"train_{PIPELINE}"
DRIFT_DAG = f"drift_{PIPELINE}"
CONN_ID = "trainyard_test_warehouse"
CONN_ENV = f"AIRFLOW_CONN_{CONN_ID.upper()}"
ROWS = 600  # per day of January
#: Rows of each checked day: at 600, sampling noise alone put two columns of the stable day just
#: past the 0.1 Wasserstein threshold; at 2,000 the stable day is clean and the drifted one not.
CURRENT_ROWS = 2000
#: The champion trains on 14 days ending here (the spec's window).
REFERENCE_END = date(2026, 1, 28)
STABLE_DAY = date(2026, 2, 25)
DRIFT_DAY = date(2026, 2, 26)
DRIFTED = {"support_calls": 1.0, "data_usage_gb": 1.0}


@pytest.fixture(scope="module")
def warehouse() -> Iterator[str]:
    """``customer_events`` with January (stable), STABLE_DAY and a drifted DRIFT_DAY; its URL.

    Rows on the days around the window are there too, so the bounds must select exactly.
    """
    from trainyard_dev.churn import Knobs

    with warehouse_database("trainyard_sql_e2e") as url:
        day = date(2026, 1, 1)
        while day <= REFERENCE_END + timedelta(days=1):
            insert_rows(url, customer_events(day, ROWS))
            day += timedelta(days=1)
        insert_rows(url, customer_events(STABLE_DAY, CURRENT_ROWS))
        drifted = customer_events(DRIFT_DAY, CURRENT_ROWS, Knobs(covariate_drift=DRIFTED))
        insert_rows(url, drifted)
        yield url


@pytest.fixture(scope="module")
def connection_env(warehouse: str) -> Iterator[str]:
    """The connection as an ``AIRFLOW_CONN_<ID>`` environment variable (a URI), for this module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(CONN_ENV, warehouse)
        yield warehouse


def _rows_between(url: str, start: datetime, end: datetime) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            count = sa.text(
                "SELECT count(*) FROM customer_events WHERE event_time >= :a AND event_time < :b"
            )
            return connection.execute(count, {"a": start, "b": end}).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def trained(connection_env: str, run_dag, settings) -> DagRunResult:
    """Version 1, trained through the connection on the 14 days ending REFERENCE_END."""
    run = run_dag(TRAIN_DAG, {"window_end": REFERENCE_END.isoformat(), "reason": "test: sql v1"})
    assert run.state == "success", run.task_states
    assert run.xcoms["report"]["status"] == "registered", run.xcoms["report"]
    return run


def _summary(settings: Any, run: DagRunResult) -> Any:
    from trainyard.core import storage
    from trainyard.drift.steps import DriftSummary

    body = storage.get_bytes(settings, run.xcoms["check_drift"]["summary_uri"])
    return DriftSummary.model_validate_json(body)


def test_training_reads_the_window_through_the_airflow_connection(
    trained: DagRunResult, connection_env: str, settings
) -> None:
    from trainyard.data.snapshots import load_snapshot

    snapshot = trained.xcoms["ingest"]
    start = datetime.combine(REFERENCE_END - timedelta(days=13), datetime.min.time())
    end = datetime.combine(REFERENCE_END + timedelta(days=1), datetime.min.time())
    # Exactly the window's rows of the table (it holds the day after the window too).
    assert snapshot["rows"] == _rows_between(connection_env, start, end) == 14 * ROWS
    frame = load_snapshot(settings, snapshot["uri"], snapshot["sha256"])
    assert frame["event_date"].min() == start and frame["event_date"].max() < end
    champion = champion_of(PIPELINE)
    assert champion.version == trained.xcoms["report"]["version"]
    assert champion.tags["snapshot_sha256"] == snapshot["sha256"]
    assert (champion.tags["window_start"], champion.tags["window_end"]) == (
        start.date().isoformat(),
        REFERENCE_END.isoformat(),
    )


def test_an_undefined_connection_fails_the_ingest_at_once(trained, run_dag, monkeypatch) -> None:
    """Deterministic: ``failed`` after one try, not up for retry (the message is checked in
    tests/integration/test_sql_source.py)."""
    monkeypatch.delenv(CONN_ENV)
    versions = model_versions(PIPELINE)

    run = run_dag(TRAIN_DAG, {"window_end": REFERENCE_END.isoformat(), "reason": "test: no conn"})

    assert run.state == "failed"
    assert run.task_states["ingest"] == "failed"
    assert run.task_states["train"] == "upstream_failed"
    assert model_versions(PIPELINE) == versions


def test_drifted_day_in_the_table_is_a_drift_verdict_and_asks_for_a_retrain(
    trained: DagRunResult, run_dag, settings
) -> None:
    make_champion(PIPELINE, trained.xcoms["report"]["version"])
    before = set(dag_runs(TRAIN_DAG))

    run = run_dag(DRIFT_DAG, {"window_end": DRIFT_DAY.isoformat()})

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "drift"
    assert set(summary.drifted_columns) >= set(DRIFTED)
    assert summary.reference.snapshot_sha256 == trained.xcoms["ingest"]["sha256"]
    assert (summary.current.window_start, summary.current.window_end) == (DRIFT_DAY, DRIFT_DAY)
    assert summary.current.rows == CURRENT_ROWS
    assert run.task_states["trigger_retrain"] == "success"
    created = set(dag_runs(TRAIN_DAG)) - before
    assert len(created) == 1 and next(iter(created)).startswith("retrain__")
    delete_dag_run(TRAIN_DAG, created.pop())  # queued only; nothing in this module runs it


def test_stable_day_is_no_drift_with_the_connection_in_the_metadata_db(
    trained: DagRunResult, connection_env: str, run_dag, settings, monkeypatch
) -> None:
    """The same check with the connection stored in Airflow's metadata DB, not the environment."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    make_champion(PIPELINE, trained.xcoms["report"]["version"])
    monkeypatch.delenv(CONN_ENV)
    with create_session() as session:
        session.add(Connection(conn_id=CONN_ID, uri=connection_env))
    try:
        run = run_dag(DRIFT_DAG, {"window_end": STABLE_DAY.isoformat()})
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == CONN_ID).delete()

    assert run.state == "success", run.task_states
    summary = _summary(settings, run)
    assert summary.verdict == "no_drift" and summary.drifted_columns == []
    assert (summary.current.window_start, summary.current.window_end) == (STABLE_DAY, STABLE_DAY)
    assert summary.current.rows == CURRENT_ROWS
    assert run.task_states["trigger_retrain"] == "skipped"
