"""Ingestion: resolve a run's window, read its raw data, write one immutable snapshot.

Snapshots are content-addressed: ``s3://<artifacts>/snapshots/<pipeline>/<sha256>.parquet``,
where sha256 is the hash of the snapshot's Parquet bytes. The same window with the same raw
data always lands on the same key, so re-ingesting changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.settings import Settings
    from trainyard.spec import PipelineSpec


class MissingPartitionsError(RuntimeError):
    """Raw partitions of the window are absent."""

    def __init__(self, source: str, missing: list[date]) -> None:
        self.missing = missing
        days = ", ".join(d.isoformat() for d in missing)
        super().__init__(f"{len(missing)} raw partition(s) missing under {source}: {days}")


class TrainingWindow(BaseModel):
    """Inclusive range of partition dates a run reads."""

    model_config = ConfigDict(frozen=True)

    start: date
    end: date

    @classmethod
    def ending(cls, end: date, days: int) -> TrainingWindow:
        """The ``days`` days that end on ``end`` (both ends included).

        Raises:
            ValueError: ``days`` is below 1.
        """
        if days < 1:
            raise ValueError(f"window_days must be at least 1, got {days}")
        return cls(start=end - timedelta(days=days - 1), end=end)

    def days(self) -> list[date]:
        """Every date in the window, oldest first."""
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


class SnapshotRef(BaseModel):
    """What XCom carries about a snapshot: where it is and what it holds, never the data."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    rows: int
    window_start: date
    window_end: date
    sources: int


def resolve_window(
    spec: PipelineSpec,
    run_day: date,
    window_end: date | None = None,
    window_days: int | None = None,
) -> TrainingWindow:
    """Work out which partitions a run reads.

    Args:
        spec: The pipeline spec (default window length and offset).
        run_day: The day the run is for (a scheduled run's date, or today for a manual run).
        window_end: Last partition date to include; overrides the spec's offset.
        window_days: Number of days; overrides the spec.

    Returns:
        The inclusive window.
    """
    end = window_end or run_day - timedelta(days=spec.window.end_offset_days)
    return TrainingWindow.ending(end, window_days or spec.window.days)


def read_partitions(
    settings: Settings, bucket: str, prefix: str, days: list[date]
) -> tuple[pd.DataFrame, int]:
    """Read daily partitions ``<prefix>/date=YYYY-MM-DD/*.parquet``.

    Returns:
        The concatenated rows (oldest day first) and the number of files read.

    Raises:
        MissingPartitionsError: Listing every date without a file.
    """
    import pandas as pd

    from trainyard import storage

    files_by_day = {
        day: [
            key
            for key in storage.list_keys(settings, bucket, f"{prefix}/date={day:%Y-%m-%d}/")
            if key.endswith(".parquet")
        ]
        for day in days
    }
    missing = [day for day, keys in files_by_day.items() if not keys]
    if missing:
        raise MissingPartitionsError(f"s3://{bucket}/{prefix}/", missing)
    frames = [
        storage.read_parquet(settings, f"s3://{bucket}/{key}")
        for day in days
        for key in files_by_day[day]
    ]
    return pd.concat(frames, ignore_index=True), len(frames)


def read_sklearn_dataset(name: str) -> pd.DataFrame:
    """Load a dataset bundled with scikit-learn, with snake_case column names and ``target``."""
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    frame = loader(as_frame=True).frame
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    return frame


def read_window(
    spec: PipelineSpec, settings: Settings, window: TrainingWindow
) -> tuple[pd.DataFrame, int]:
    """Read the raw data a window covers, from whichever source the spec names.

    Returns:
        The rows and the number of source files (1 for a static dataset).
    """
    source = spec.source
    if source.kind == "sklearn_dataset":
        return read_sklearn_dataset(source.dataset), 1
    bucket = source.bucket or settings.raw_bucket
    return read_partitions(settings, bucket, source.prefix, window.days())


def snapshot_uri(settings: Settings, pipeline: str, sha256: str) -> str:
    """The content-addressed key of a snapshot."""
    return f"s3://{settings.artifacts_bucket}/snapshots/{pipeline}/{sha256}.parquet"


def write_snapshot(
    settings: Settings, pipeline: str, frame: pd.DataFrame, window: TrainingWindow, sources: int
) -> SnapshotRef:
    """Store a frame as an immutable, content-addressed Parquet snapshot.

    An existing snapshot with the same hash is left untouched.

    Returns:
        The reference to the snapshot.
    """
    from trainyard import storage

    body = storage.parquet_bytes(frame)
    sha256 = hashlib.sha256(body).hexdigest()
    uri = snapshot_uri(settings, pipeline, sha256)
    if not storage.exists(settings, uri):
        storage.ensure_bucket(settings, settings.artifacts_bucket)
        storage.put_bytes(settings, uri, body, "application/vnd.apache.parquet")
    return SnapshotRef(
        uri=uri,
        sha256=sha256,
        rows=len(frame),
        window_start=window.start,
        window_end=window.end,
        sources=sources,
    )


def ingest(spec: PipelineSpec, settings: Settings, window: TrainingWindow) -> SnapshotRef:
    """Read the window's raw data and write its snapshot.

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint.
        window: Which days to read.

    Returns:
        Reference to the (possibly pre-existing) snapshot.

    Raises:
        MissingPartitionsError: Some partitions of the window are absent.
        ValueError: The window holds no rows.
    """
    frame, sources = read_window(spec, settings, window)
    if frame.empty:
        raise ValueError(f"window {window.start}..{window.end} of {spec.name!r} holds no rows")
    return write_snapshot(settings, spec.name, frame, window, sources)


def load_snapshot(settings: Settings, snapshot: SnapshotRef) -> pd.DataFrame:
    """Read a snapshot back, checking it is the one the reference names.

    Raises:
        ValueError: The stored bytes do not match the recorded hash.
    """
    import io

    import pyarrow.parquet as pq

    from trainyard import storage

    body = storage.get_bytes(settings, snapshot.uri)
    actual = hashlib.sha256(body).hexdigest()
    if actual != snapshot.sha256:
        raise ValueError(f"snapshot {snapshot.uri} has sha256 {actual}, expected {snapshot.sha256}")
    return pq.read_table(io.BytesIO(body)).to_pandas()
