"""Windows and immutable, content-addressed snapshots.

A snapshot is ``s3://<artifacts>/snapshots/<pipeline>/<sha256>.parquet``, where sha256 is the
hash of its Parquet bytes. The same rows always land on the same key, so writing again changes
nothing, and a reader can check it got exactly what a reference names.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from trainyard.core.errors import DeterministicError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from trainyard.core.settings import Settings


class WindowError(DeterministicError, ValueError):
    """A window that cannot be read (fewer than one day, or ending after the run day)."""


class SnapshotUnavailableError(DeterministicError):
    """A snapshot is missing or its bytes no longer hash to the recorded sha256."""


class TrainingWindow(BaseModel):
    """Inclusive range of partitions a run reads: whole days, or hours from ``first_hour`` of
    ``start`` to ``last_hour`` of ``end``."""

    model_config = ConfigDict(frozen=True)

    start: date
    end: date
    first_hour: int = Field(default=0, ge=0, le=23)
    last_hour: int = Field(default=23, ge=0, le=23)

    @classmethod
    def ending(cls, end: date, days: int, run_day: date | None = None) -> TrainingWindow:
        """The ``days`` days that end on ``end`` (both ends included).

        Args:
            end: The last day.
            days: How many days.
            run_day: The day the run is for; a window ending after it is refused, because
                partitions dated in the future cannot be trusted (a wrong clock or folder name).

        Raises:
            WindowError: ``days`` is below 1, or ``end`` is after ``run_day``.
        """
        if days < 1:
            raise WindowError(f"window_days must be at least 1, got {days}")
        if run_day is not None and end > run_day:
            raise WindowError(
                f"window_end {end} is after the run day {run_day}: partitions dated in the "
                "future are refused"
            )
        return cls(start=end - timedelta(days=days - 1), end=end)

    @classmethod
    def ending_hours(cls, last: datetime, hours: int) -> TrainingWindow:
        """The ``hours`` hours that end with the hour starting at ``last`` (both included).

        Raises:
            WindowError: ``hours`` is below 1.
        """
        if hours < 1:
            raise WindowError(f"window hours must be at least 1, got {hours}")
        last = last.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        first = last - timedelta(hours=hours - 1)
        return cls(start=first.date(), end=last.date(), first_hour=first.hour, last_hour=last.hour)

    @property
    def whole_days(self) -> bool:
        """Whether the window covers whole days (hour 0 of the first to hour 23 of the last)."""
        return self.first_hour == 0 and self.last_hour == 23

    @property
    def start_moment(self) -> datetime:
        """The window's first instant (included)."""
        return datetime.combine(self.start, time(self.first_hour))

    @property
    def end_moment(self) -> datetime:
        """The instant after the window's last hour (excluded)."""
        return datetime.combine(self.end, time(self.last_hour)) + timedelta(hours=1)

    def days(self) -> list[date]:
        """Every date in the window, oldest first."""
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def hours(self) -> list[datetime]:
        """Every hour in the window (its start), oldest first."""
        count = int((self.end_moment - self.start_moment) / timedelta(hours=1))
        return [self.start_moment + timedelta(hours=i) for i in range(count)]

    def label(self) -> str:
        """``start..end`` in days, or in hours when the window does not cover whole days."""
        if self.whole_days:
            return f"{self.start}..{self.end}"
        last = self.end_moment - timedelta(hours=1)
        return f"{self.start_moment:%Y-%m-%dT%H}h..{last:%Y-%m-%dT%H}h"


class SnapshotRef(BaseModel):
    """What XCom carries about a snapshot: where it is and what it holds, never the data."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    rows: int
    window_start: date
    window_end: date
    window_first_hour: int = 0
    window_last_hour: int = 23
    sources: int

    def tags(self) -> dict[str, str]:
        """Lineage tags naming the exact data (the window's hours too when not whole days)."""
        tags = {
            "snapshot_uri": self.uri,
            "snapshot_sha256": self.sha256,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
        }
        if (self.window_first_hour, self.window_last_hour) != (0, 23):
            tags["window_hours"] = (
                f"{self.window_first_hour:02d}:00 of the first day to "
                f"{self.window_last_hour:02d}:59 of the last"
            )
        return tags


def snapshot_uri(settings: Settings, pipeline: str, sha256: str) -> str:
    """The content-addressed key of a snapshot."""
    return f"s3://{settings.artifacts_bucket}/snapshots/{pipeline}/{sha256}.parquet"


#: Rows per row group of a snapshot. Fixed, so a snapshot's bytes depend on its rows only, not
#: on how they were read (files of any size, CSV chunks, SQL chunks).
ROW_GROUP_ROWS = 1_048_576


class SnapshotTypeError(DeterministicError):
    """A piece of rows whose column types differ from the first piece's."""


class SnapshotWriter:
    """Writes pieces of normalised rows to a local Parquet file, in fixed-size row groups.

    Memory holds at most one row group of pending rows, whatever the snapshot's size. The
    file's schema comes from the first piece's column types (never its values), so the same
    rows give the same bytes however they were cut into pieces.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "snapshot.parquet"
        self.rows = 0
        self._schema: Any = None
        self._writer: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0

    def add(self, frame: pd.DataFrame, where: str) -> None:
        """Append rows (already normalised).

        Raises:
            SnapshotTypeError: The rows' column types differ from the first piece's.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        if frame.empty:
            return
        if self._schema is None:
            # Types and pandas metadata from an empty slice: they depend on dtypes only.
            schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
            for index, column in enumerate(schema):
                if pa.types.is_null(column.type):  # an empty text column: text is all we have
                    schema = schema.set(index, column.with_type(pa.string()))
            self._schema = schema
            self._writer = pq.ParquetWriter(self.path, self._schema, compression="zstd")
        try:
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError):
            expected = {f.name: str(f.type) for f in self._schema}
            found = {str(c): str(t) for c, t in frame.dtypes.items()}
            raise SnapshotTypeError(
                f"{where}: its columns {found} do not fit the types of the rows read before "
                f"{expected}; declare the column's type in schema.dtypes"
            ) from None
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _flush(self, rows: int) -> None:
        import pyarrow as pa

        pending = pa.concat_tables(self._pending)
        self._writer.write_table(pending.slice(0, rows), row_group_size=rows)
        rest = pending.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> str:
        """Write what is pending and close the file.

        Returns:
            The sha256 of the file's bytes.
        """
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is not None:
            self._writer.close()
        digest = hashlib.sha256()
        with self.path.open("rb") as body:
            for block in iter(lambda: body.read(1 << 23), b""):
                digest.update(block)
        return digest.hexdigest()


def store_snapshot(
    settings: Settings,
    pipeline: str,
    writer: SnapshotWriter,
    window: TrainingWindow,
    sources: int,
) -> SnapshotRef:
    """Close a snapshot's file and store it under its content hash (an existing one is kept).

    Returns:
        The reference to the snapshot.
    """
    from trainyard.core import storage

    sha256 = writer.close()
    uri = snapshot_uri(settings, pipeline, sha256)
    if not storage.exists(settings, uri):
        storage.ensure_buckets(settings, [settings.artifacts_bucket])
        storage.put_file(settings, uri, writer.path, "application/vnd.apache.parquet")
    return SnapshotRef(
        uri=uri,
        sha256=sha256,
        rows=writer.rows,
        window_start=window.start,
        window_end=window.end,
        window_first_hour=window.first_hour,
        window_last_hour=window.last_hour,
        sources=sources,
    )


#: Rows per piece when a snapshot is read in pieces (:meth:`SnapshotFile.batches`).
BATCH_ROWS = 262_144


class SnapshotFile:
    """A snapshot downloaded to a local file, read by column or in pieces of rows.

    Nothing is read into memory until asked, and then only the columns asked for: a step that
    needs three columns of a 10M-row snapshot holds three columns.
    """

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._file = pq.ParquetFile(path)
        self.rows: int = self._file.metadata.num_rows
        self.columns: list[str] = list(self._file.schema_arrow.names)

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Whole columns (all of them when ``columns`` is None), with the types they were
        written with.

        Read in pieces (:meth:`batches`) and put together: converting a whole text column at
        once makes Arrow deduplicate all its strings in one table, which for a 10M-row id
        column held 2.5 GB against 1.3 GB this way (values, types and index are the same).

        Args:
            columns: Names to read, in this order; names the snapshot lacks are left out.
        """
        import pandas as pd

        names = self.columns if columns is None else [c for c in columns if c in self.columns]
        if not names:  # every row, no column (e.g. what a row count needs)
            return pd.DataFrame(index=pd.RangeIndex(self.rows))
        pieces = list(self.batches(names))
        if not pieces:
            return self.header()[names]
        return pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]

    def row_bytes(self, rows: int) -> dict[str, float]:
        """Each column's pandas memory per row, estimated from the first ``rows`` rows.

        Text counts its string objects (``memory_usage(deep=True)``): a 10M-row text column
        takes several times the memory of a numeric one, which sizes validation passes.

        Args:
            rows: How many of the first rows to read (fewer if the snapshot is shorter).

        Returns:
            Column name -> bytes per row, in the snapshot's column order (0 for no rows).
        """
        first = next(self.batches(self.columns, max(1, rows)), None)
        if first is None or first.empty:
            return dict.fromkeys(self.columns, 0.0)
        usage = first.memory_usage(deep=True, index=False)
        return {column: float(usage[column]) / len(first) for column in self.columns}

    def header(self) -> pd.DataFrame:
        """No rows, every column with its type: what checks of the column names need."""
        return self._file.schema_arrow.empty_table().to_pandas()

    def batches(self, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
        """The given columns in pieces of at most ``rows`` rows, in snapshot order.

        Each piece is indexed by its rows' positions in the snapshot, so the pieces put
        together equal :meth:`read` of the same columns, index included.
        """
        import pandas as pd
        import pyarrow as pa

        names = [c for c in columns if c in self.columns]
        start = 0
        for batch in self._file.iter_batches(batch_size=rows, columns=names):
            # The file's schema carries pandas' metadata (e.g. nullable Int64), as read() uses.
            table = pa.Table.from_batches([batch]).replace_schema_metadata(
                self._file.schema_arrow.metadata
            )
            frame = table.to_pandas(self_destruct=True)
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            yield frame


@contextmanager
def open_snapshot(settings: Settings, uri: str, sha256: str) -> Iterator[SnapshotFile]:
    """Download a snapshot to a temporary file, checking it is byte for byte the one recorded.

    The object is streamed to disk and hashed on the way: memory holds one block of it, not the
    whole object. The file is removed when the block ends.

    Args:
        settings: Endpoint and credentials.
        uri: Where the snapshot is.
        sha256: The hash it was recorded with.

    Yields:
        The snapshot's file.

    Raises:
        SnapshotUnavailableError: The object is gone, or its bytes hash to something else.
    """
    import tempfile

    from trainyard.core import storage

    if not storage.exists(settings, uri):
        raise SnapshotUnavailableError(f"snapshot {uri} does not exist (any more)")
    with tempfile.TemporaryDirectory(prefix="trainyard-snapshot-") as directory:
        path = Path(directory) / "snapshot.parquet"
        digest = hashlib.sha256()
        with path.open("wb") as file:
            for block in storage.iter_object(settings, uri):
                digest.update(block)
                file.write(block)
        actual = digest.hexdigest()
        if actual != sha256:
            raise SnapshotUnavailableError(f"snapshot {uri} has sha256 {actual}, expected {sha256}")
        yield SnapshotFile(path)


def load_snapshot(settings: Settings, uri: str, sha256: str) -> pd.DataFrame:
    """Read a whole snapshot back, checking it is the one recorded (see :func:`open_snapshot`).

    For snapshots that may be large, read only the columns or pieces needed through
    :func:`open_snapshot` instead.

    Args:
        settings: Endpoint and credentials.
        uri: Where the snapshot is.
        sha256: The hash it was recorded with.

    Returns:
        Its rows.

    Raises:
        SnapshotUnavailableError: The object is gone, or its bytes hash to something else.
    """
    with open_snapshot(settings, uri, sha256) as snapshot:
        return snapshot.read()
