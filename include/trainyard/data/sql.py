"""SQL sources: a query on a database, windowed through bound parameters, read in chunks.

The window reaches the database only as the values of the bound parameters ``:window_start``
(included) and ``:window_end`` (excluded); the query text is sent exactly as the spec has it, so
nothing from a run (a Param, a date) can change what the statement does. Rows come back through
a server-side cursor, ``chunk_rows`` at a time, and each chunk goes through the same checks and
normalisation as a file does, so memory holds one chunk of raw rows at a time.

SQLAlchemy and pandas are imported inside the functions (this module is imported by the
ingest step only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from trainyard.core.errors import DeterministicError

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.spec import SqlSource
    from trainyard.data.snapshots import TrainingWindow


class SqlSourceError(DeterministicError):
    """The query cannot run as written, or its connection is not configured."""


def describe(source: SqlSource) -> str:
    """How messages name a SQL source: its connection and the query's first line."""
    connection = (
        f"${source.url_env}" if source.url_env else f"Airflow connection {source.conn_id!r}"
    )
    first = source.query.strip().splitlines()[0]
    return f"SQL query on {connection} ({first[:60]}{'...' if len(first) > 60 else ''})"


def _engine(source: SqlSource) -> Any:
    """A SQLAlchemy engine from the environment variable or the Airflow connection.

    Raises:
        SqlSourceError: The variable is unset, or the connection is undefined or not a
            database's.
    """
    from sqlalchemy import create_engine

    if source.url_env:
        url = os.environ.get(source.url_env, "").strip()
        if not url:
            raise SqlSourceError(
                f"{describe(source)}: environment variable {source.url_env} (source.url_env) "
                "is not set; it must hold a SQLAlchemy URL"
            )
        return create_engine(url)
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(source.conn_id)
    except AirflowNotFoundException:
        raise SqlSourceError(
            f"{describe(source)}: no such connection (source.conn_id); define it with "
            f"AIRFLOW_CONN_{source.conn_id.upper()}, the Airflow UI or a secrets backend"
        ) from None
    hook = connection.get_hook()
    if not hasattr(hook, "get_sqlalchemy_engine"):
        raise SqlSourceError(
            f"{describe(source)}: connection {source.conn_id!r} (source.conn_id) is not a "
            f"database connection ({type(hook).__name__})"
        )
    return hook.get_sqlalchemy_engine()


def window_parameters(source: SqlSource, window: TrainingWindow) -> dict[str, Any]:
    """The bound parameters of a windowed query (none for a static one)."""
    if not source.windowed:
        return {}
    return {"window_start": window.start_moment, "window_end": window.end_moment}


@contextmanager
def _refused(source: SqlSource) -> Iterator[None]:
    """A query the database refuses (bad SQL, a missing table or column) is deterministic."""
    from sqlalchemy.exc import DataError, ProgrammingError

    try:
        yield
    except (ProgrammingError, DataError) as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        raise SqlSourceError(f"{describe(source)} failed: {reason}") from None


def read_chunks(source: SqlSource, window: TrainingWindow) -> Iterator[pd.DataFrame]:
    """The query's rows for a window, ``source.chunk_rows`` at a time (server-side cursor).

    Raises:
        SqlSourceError: The connection is not configured, or the database refuses the query.
        sqlalchemy.exc.OperationalError: The database cannot be reached (retried by Airflow).
    """
    import pandas as pd
    from sqlalchemy import text

    engine = _engine(source)
    try:
        with (
            _refused(source),
            engine.connect() as connection,
        ):
            streaming = connection.execution_options(
                stream_results=True, max_row_buffer=source.chunk_rows
            )
            yield from pd.read_sql(
                text(source.query),
                streaming,
                params=window_parameters(source, window),
                chunksize=source.chunk_rows,
            )
    finally:
        engine.dispose()
