"""Reading a window of raw data from the source a spec names, and ingesting it as a snapshot.

Source kinds: daily Parquet partitions on S3 (``<prefix>/date=YYYY-MM-DD/*.parquet``) and the
static datasets bundled with scikit-learn (the window is ignored).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import TYPE_CHECKING

from trainyard.core.errors import DeterministicError
from trainyard.data.snapshots import SnapshotRef, TrainingWindow, write_snapshot

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


class MissingPartitionsError(DeterministicError):
    """Raw partitions of the window are absent (the spec says whether to skip or fail)."""

    def __init__(self, source: str, missing: list[date]) -> None:
        self.missing = missing
        days = ", ".join(d.isoformat() for d in missing)
        super().__init__(f"{len(missing)} raw partition(s) missing under {source}: {days}")


class EmptyWindowError(DeterministicError):
    """The window's partitions exist but hold no rows."""


def resolve_window(
    spec: PipelineSpec,
    run_day: date,
    window_end: date | None = None,
    window_days: int | None = None,
) -> TrainingWindow:
    """Work out which partitions a training run reads.

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


def partition_dates(settings: Settings, bucket: str, prefix: str) -> list[date]:
    """Dates of the ``<prefix>/date=YYYY-MM-DD/`` partitions that exist, oldest first.

    Lists "folders" only (S3 delimiter listing), not every file.
    """
    from trainyard.core import storage

    paginator = storage.client(settings).get_paginator("list_objects_v2")
    found: list[date] = []
    root = f"{prefix.strip('/')}/date="
    for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/"):
        for entry in page.get("CommonPrefixes", []):
            value = entry["Prefix"][len(root) :].rstrip("/")
            try:
                found.append(date.fromisoformat(value))
            except ValueError:
                log.warning("ignoring partition folder with a malformed date: %s", entry["Prefix"])
    return sorted(found)


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

    from trainyard.core import storage

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


def raw_bucket(spec: PipelineSpec, settings: Settings) -> str:
    """The bucket a partitioned source reads from: the spec's, else ``TRAINYARD_RAW_BUCKET``."""
    return spec.source.bucket or settings.raw_bucket


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
    return read_partitions(settings, raw_bucket(spec, settings), source.prefix, window.days())


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
        EmptyWindowError: The window holds no rows.
    """
    frame, sources = read_window(spec, settings, window)
    if frame.empty:
        raise EmptyWindowError(
            f"window {window.start}..{window.end} of {spec.name!r} holds no rows"
        )
    return write_snapshot(settings, spec.name, frame, window, sources)
