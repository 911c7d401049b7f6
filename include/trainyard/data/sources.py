"""Reading a window of raw data from the source a spec names, and ingesting it as a snapshot.

Source kinds: daily Parquet partitions on S3 (``<prefix>/date=YYYY-MM-DD/*.parquet``) and the
static datasets bundled with scikit-learn (the window is ignored).

Every partition is checked before it is merged with the others (:func:`read_partitions`): each
file must open as Parquet, hold the spec's declared columns with parseable types
(:func:`check_frame`, reusable by any source kind), and each partition must hold rows. A file
whose bytes equal another file's in the same partition is read once (a copy uploaded twice),
with a warning. Columns must keep one kind (number, text, boolean, date) across partitions.
"""

from __future__ import annotations

import hashlib
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

#: Columns named in a "lacks columns" message before it says "..." instead.
_SHOWN_COLUMNS = 20


class MissingPartitionsError(DeterministicError):
    """Raw partitions of the window are absent (the spec says whether to skip or fail)."""

    def __init__(self, source: str, missing: list[date]) -> None:
        self.missing = missing
        days = ", ".join(d.isoformat() for d in missing)
        super().__init__(f"{len(missing)} raw partition(s) missing under {source}: {days}")


class EmptyWindowError(DeterministicError):
    """The window's partitions exist but hold no rows."""


class RawDataError(DeterministicError):
    """Raw data (a partition file) cannot be used; the message names it, the column, a value."""


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
        window_days: Number of days; overrides the spec (0 or less is an error, not "default").

    Returns:
        The inclusive window.

    Raises:
        trainyard.data.snapshots.WindowError: ``window_days`` below 1, or a window ending after
            the run day.
    """
    end = window_end or run_day - timedelta(days=spec.window.end_offset_days)
    days = spec.window.days if window_days is None else window_days
    return TrainingWindow.ending(end, days, run_day)


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


def column_kind(values: pd.Series) -> str:
    """What a column holds: number, boolean, text, date, empty (all null) or mixed."""
    import pandas as pd

    types = pd.api.types
    if types.is_bool_dtype(values.dtype):
        return "boolean"
    if types.is_numeric_dtype(values.dtype):
        return "number" if values.notna().any() else "empty"
    if types.is_datetime64_any_dtype(values.dtype):
        return "date"
    inferred = types.infer_dtype(values.astype(object), skipna=True)
    return {
        "integer": "number",
        "floating": "number",
        "mixed-integer-float": "number",
        "decimal": "number",
        "boolean": "boolean",
        "string": "text",
        "datetime64": "date",
        "datetime": "date",
        "date": "date",
        "empty": "empty",
    }.get(inferred, "mixed")


def _sample(values: pd.Series) -> object:
    value = values.iloc[0]
    return value.item() if hasattr(value, "item") else value


_NUMBERS = ("numbers", frozenset({"number", "boolean", "empty"}))
_DATES = ("dates", frozenset({"date", "empty"}))


def _parsed(
    frame: pd.DataFrame, column: str, where: str, role: str, wanted: tuple[str, frozenset[str]]
) -> pd.DataFrame:
    """The frame with ``column`` as numbers or dates, if every value parses as one.

    Raises:
        RawDataError: Naming the column, one value that does not parse and how many do not.
    """
    import pandas as pd

    noun, kinds = wanted
    values = frame[column]
    if column_kind(values) in kinds:
        return frame
    if noun == "numbers":
        parsed = pd.to_numeric(values, errors="coerce")
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = values[values.notna() & parsed.isna()]
    if not bad.empty:
        raise RawDataError(
            f"{where}: {role} column {column!r} must hold {noun}; found {_sample(bad)!r} "
            f"({len(bad)} such value(s))"
        )
    return frame.assign(**{column: parsed})


def check_frame(
    spec: PipelineSpec, frame: pd.DataFrame, where: str, require_target: bool = True
) -> pd.DataFrame:
    """Check one piece of raw data against the spec's schema before it is merged with others.

    Any source kind can call it on what it read (a Parquet partition file today; a CSV file or a
    SQL result later). Declared columns: the features, the target, and the id and timestamp
    columns when the spec declares them.

    Args:
        spec: The schema and the task.
        frame: The rows as read.
        where: What the rows are, for messages (e.g. ``partition 2026-06-01 file s3://...``).
        require_target: False for rows to score, whose target may be absent (when present, it
            is still checked against the task).

    Returns:
        The frame, with numeric columns that arrived as text parsed into numbers and a timestamp
        column that arrived as text parsed into timestamps.

    Raises:
        RawDataError: A declared column is missing, a numeric column (or a regression target)
            holds something that is not a number, a timestamp does not parse, a text column mixes
            kinds of values, or the target does not fit the task; naming the column and a value.
    """
    from trainyard.training.modeling import target_problem

    schema = spec.schema_
    has_target = require_target or schema.target in frame.columns
    declared = [*schema.features, *([schema.target] if has_target else [])]
    declared += [c for c in (schema.id_column, schema.timestamp_column) if c]
    missing = [c for c in declared if c not in frame.columns]
    if missing:
        present = [str(c) for c in frame.columns]
        shown = present[:_SHOWN_COLUMNS] + (["..."] if len(present) > _SHOWN_COLUMNS else [])
        raise RawDataError(f"{where}: lacks declared column(s) {missing}; it has {shown}")
    for column in schema.numeric_features:
        frame = _parsed(frame, column, where, "numeric feature", _NUMBERS)
    if spec.model.task == "regression" and has_target:
        frame = _parsed(frame, schema.target, where, "target", _NUMBERS)
    if schema.timestamp_column:
        frame = _parsed(frame, schema.timestamp_column, where, "timestamp", _DATES)
    for column in schema.categorical_features:
        if column_kind(frame[column]) == "mixed":
            raise RawDataError(
                f"{where}: categorical feature {column!r} mixes kinds of values, e.g. "
                f"{frame[column].dropna().drop_duplicates().head(3).tolist()}"
            )
    problem = target_problem(spec, frame[schema.target]) if has_target else None
    if problem:
        raise RawDataError(f"{where}: {problem}")
    return frame


def _read_parquet_file(body: bytes, uri: str, day: date) -> pd.DataFrame:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(body)).to_pandas()
    except (pa.ArrowException, OSError) as error:
        reason = str(error).replace("'<Buffer>'", "the file").splitlines()[0]
        raise RawDataError(
            f"partition {day} file {uri} cannot be read as Parquet: {reason}"
        ) from None


def _check_kinds(
    kinds: dict[str, tuple[str, str]], frame: pd.DataFrame, columns: list[str], where: str
) -> None:
    """Each column keeps one kind across partitions; ``kinds`` remembers the first seen."""
    for column in columns:
        kind = column_kind(frame[column])
        if kind == "empty":
            continue
        first_kind, first_where = kinds.setdefault(column, (kind, where))
        if kind != first_kind:
            raise RawDataError(
                f"column {column!r} holds {kind} values in {where} but {first_kind} values in "
                f"{first_where}"
            )


def read_partitions(
    spec: PipelineSpec,
    settings: Settings,
    bucket: str,
    prefix: str,
    days: list[date],
    require_target: bool = True,
) -> tuple[pd.DataFrame, int]:
    """Read daily partitions ``<prefix>/date=YYYY-MM-DD/*.parquet``, checking each before merging.

    ``require_target=False`` reads rows to score: the target may be absent (see
    :func:`check_frame`).

    Returns:
        The concatenated rows (oldest day first) and the number of files read.

    Raises:
        MissingPartitionsError: Listing every date without a file.
        RawDataError: A file that does not open, lacks a declared column or holds unparseable
            values, an empty partition, or a column whose kind changes between partitions.
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
    schema = spec.schema_
    columns = list(schema.features)
    kinds: dict[str, tuple[str, str]] = {}
    frames = []
    for day in days:
        seen: dict[str, str] = {}
        day_frames = []
        for key in files_by_day[day]:
            uri = f"s3://{bucket}/{key}"
            body = storage.get_bytes(settings, uri)
            digest = hashlib.sha256(body).hexdigest()
            if digest in seen:
                log.warning("%s has the same bytes as %s; reading them once", uri, seen[digest])
                continue
            seen[digest] = uri
            where = f"partition {day} file {uri}"
            frame = check_frame(spec, _read_parquet_file(body, uri, day), where, require_target)
            if frame.empty:
                log.warning("%s holds no rows; skipped", where)
                continue
            present = [c for c in (*columns, schema.target) if c in frame.columns]
            _check_kinds(kinds, frame, present, where)
            day_frames.append(frame)
        if not day_frames:
            raise RawDataError(
                f"partition {day} (s3://{bucket}/{prefix}/date={day:%Y-%m-%d}/) holds no rows"
            )
        frames += day_frames
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
        frame = read_sklearn_dataset(source.dataset)
        return check_frame(spec, frame, f"scikit-learn dataset {source.dataset!r}"), 1
    return read_partitions(spec, settings, raw_bucket(spec, settings), source.prefix, window.days())


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
        RawDataError: A partition file is unreadable or does not fit the spec's schema.
        EmptyWindowError: The window holds no rows.
    """
    frame, sources = read_window(spec, settings, window)
    if frame.empty:
        raise EmptyWindowError(
            f"window {window.start}..{window.end} of {spec.name!r} holds no rows"
        )
    return write_snapshot(settings, spec.name, frame, window, sources)
