"""Reading a window of raw data from the source a spec names, and ingesting it as a snapshot.

Source kinds (``source.kind`` in the spec):

- ``files``: Parquet or CSV files on S3, either partitioned by day or hour with a declared
  layout (:mod:`trainyard.data.layouts`; the run reads its window's folders) or static (every
  file under a prefix, or one file; the window is ignored);
- ``sklearn_dataset``: the static datasets bundled with scikit-learn (the window is ignored).

Every kind goes through one path: the source yields pieces of rows (a file, or a chunk of one),
each piece is checked against the spec's schema before it is merged with the others
(:func:`check_frame`: the declared columns are there, numeric values parse, the target fits the
task) and normalised to the schema's column types (:func:`normalise`: declared columns only, in
a fixed order, each with one type whatever the file format). So the same rows give the same
snapshot, and the same hash, whether they arrived as CSV or Parquet. A file whose bytes equal
another file's in the same partition is read once (a copy uploaded twice), with a warning.
Columns must keep one kind (number, text, boolean, date) across pieces.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from trainyard.core.errors import DeterministicError
from trainyard.data.snapshots import SnapshotRef, SnapshotWriter, TrainingWindow, store_snapshot

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.core.spec import ColumnType, CsvOptions, FilesSource, PipelineSpec
    from trainyard.data.layouts import Layout

log = logging.getLogger(__name__)

#: Columns named in a "lacks columns" message before it says "..." instead.
_SHOWN_COLUMNS = 20
#: Rows per piece read from a file (a CSV chunk, a Parquet record batch).
CHUNK_ROWS = 250_000


class MissingPartitionsError(DeterministicError):
    """Raw partitions of the window are absent (the spec says whether to skip or fail)."""

    def __init__(self, source: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"{len(missing)} raw partition(s) missing under {source}: {', '.join(missing)}"
        )


class EmptyWindowError(DeterministicError):
    """The window's partitions exist but hold no rows."""


class RawDataError(DeterministicError):
    """Raw data (a partition file) cannot be used; the message names it, the column, a value."""


def resolve_window(
    spec: PipelineSpec,
    run_day: date,
    window_end: date | None = None,
    window_days: int | None = None,
    run_time: datetime | None = None,
) -> TrainingWindow:
    """Work out which partitions a training run reads.

    Args:
        spec: The pipeline spec (default window length and offset, in days or hours).
        run_day: The day the run is for (a scheduled run's date, or today for a manual run).
        window_end: Last partition date to include; overrides the spec's offset (an hours
            window then ends with that day's last hour).
        window_days: Number of days; overrides the spec (0 or less is an error, not "default").
        run_time: When the run is for, to the hour; an hours window ends
            ``window.end_offset_hours`` before its hour (default: the start of ``run_day``).

    Returns:
        The inclusive window.

    Raises:
        trainyard.data.snapshots.WindowError: ``window_days`` below 1, or a window ending after
            the run day.
    """
    hours = spec.window.hours
    if hours is not None and window_days is None:
        if window_end is not None:
            TrainingWindow.ending(window_end, 1, run_day)  # refuses a day after the run day
            return TrainingWindow.ending_hours(datetime.combine(window_end, time(23)), hours)
        moment = run_time or datetime.combine(run_day, time())
        last = moment - timedelta(hours=spec.window.end_offset_hours)
        return TrainingWindow.ending_hours(last, hours)
    end = window_end or run_day - timedelta(days=spec.window.end_offset_days)
    days = spec.window.days if window_days is None else window_days
    return TrainingWindow.ending(end, days, run_day)


def partition_dates(settings: Settings, bucket: str, prefix: str, layout: Layout) -> list[date]:
    """Dates that have at least one partition folder under ``<prefix>/``, oldest first."""
    from trainyard.core import storage

    root = f"{prefix}/"
    found = set()
    for key in storage.list_keys(settings, bucket, root):
        moment = layout.moment_of(key[len(root) :])
        if moment is None:
            log.debug("ignoring %s: not in a %s partition folder", key, layout.pattern)
        else:
            found.add(moment.date())
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
    parsed = pd.to_numeric(values, errors="coerce") if noun == "numbers" else _timestamps(values)
    bad = values[values.notna() & parsed.isna()]
    if not bad.empty:
        raise RawDataError(
            f"{where}: {role} column {column!r} must hold {noun}; found {_sample(bad)!r} "
            f"({len(bad)} such value(s))"
        )
    return frame.assign(**{column: parsed})


def _timestamps(values: pd.Series) -> pd.Series:
    """Values as naive UTC timestamps (NaT where one does not parse).

    One format inferred from the first value is vectorised; only when some values do not fit it
    is each value parsed on its own ("mixed"), which is much slower.
    """
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        # "Could not infer format": then the mixed parse below is the answer, not a warning.
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(values, errors="coerce", utc=True)
    if (values.notna() & parsed.isna()).any():
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def column_types(spec: PipelineSpec) -> dict[str, ColumnType | None]:
    """The type each declared column (and each in ``schema.dtypes``) is normalised to.

    None means the classes' own kind (a classification target).

    Defaults by role, overridden by ``schema.dtypes``: numeric features are numbers, categorical
    features and the id are text, the timestamp is a timestamp, a regression target is a number;
    a classification target keeps its classes' kind (whole numbers or text).
    """
    schema = spec.schema_
    types: dict[str, ColumnType | None] = {
        **dict.fromkeys(schema.numeric_features, "number"),
        **dict.fromkeys(schema.categorical_features, "text"),
        schema.target: "number" if spec.model.task == "regression" else None,
    }
    if schema.id_column:
        types[schema.id_column] = "text"
    if schema.timestamp_column:
        types[schema.timestamp_column] = "timestamp"
    return {
        **{column: schema.dtypes.get(column, types[column]) for column in schema.columns},
        **schema.dtypes,
    }


_TRUTH = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _as_type(values: pd.Series, kind: ColumnType | None, where: str, column: str) -> pd.Series:
    """One column converted to its normalised type.

    Raises:
        RawDataError: A value does not convert, naming the column and the value.
    """
    import pandas as pd

    if kind is None:  # a classification target: whole numbers stay numbers, anything else text
        observed = column_kind(values)
        kind = "integer" if observed in {"number", "boolean", "empty"} else "text"
    if kind == "text":
        if pd.api.types.is_float_dtype(values.dtype) and (values.dropna() % 1 == 0).all():
            values = values.astype("Int64")  # 7.0 read from a file with gaps is the text "7"
        text = values.astype("string")
        return text.astype(object).where(text.notna(), None)
    if kind == "timestamp":
        parsed = _timestamps(values)
    elif kind == "boolean":
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean")
        parsed = values.astype("string").str.strip().str.lower().map(_TRUTH).astype("boolean")
    else:
        parsed = pd.to_numeric(values, errors="coerce")
    bad = values[values.notna() & parsed.isna()]
    if kind == "integer" and bad.empty:
        bad = values[parsed.notna() & (parsed % 1 != 0)]
    if not bad.empty:
        raise RawDataError(
            f"{where}: column {column!r} must hold {kind} values; found {_sample(bad)!r} "
            f"({len(bad)} such value(s))"
        )
    if kind == "integer":
        return parsed.astype("Int64")
    return parsed.astype("float64") if kind == "number" else parsed


def normalise(spec: PipelineSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Every column with one type, declared columns first in the schema's order.

    Declared columns (and any named in ``schema.dtypes``) get their type from
    :func:`column_types`; other columns keep the kind they were read with, numbers as float64,
    dates as timestamps, anything else as text. So the same rows give the same frame and the
    same snapshot bytes whatever the file format (Parquet keeps types, CSV has only text).

    Args:
        spec: The schema and its ``dtypes``.
        frame: Rows that passed :func:`check_frame`.
        where: What the rows are, for messages.

    Returns:
        A new frame with a fresh index.

    Raises:
        RawDataError: A value does not convert to its column's type.
    """
    import pandas as pd

    types = column_types(spec)
    undeclared = [column for column in frame.columns if column not in types]
    for column in undeclared:
        types[column] = _UNDECLARED.get(column_kind(frame[column]), "text")
    return pd.DataFrame(
        {
            str(column): _as_type(frame[column], kind, where, column).reset_index(drop=True)
            for column, kind in types.items()
            # Rows to score may lack the target (check_frame(require_target=False)).
            if column in frame.columns or column != spec.schema_.target
        }
    )


#: The type of a column the schema does not declare, by the kind of values it was read with.
_UNDECLARED: dict[str, ColumnType] = {
    "number": "number",
    "empty": "number",
    "boolean": "boolean",
    "date": "timestamp",
}


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


def _first_line(error: BaseException) -> str:
    return (str(error).replace("'<Buffer>'", "the file").strip().splitlines() or [""])[0]


def _parquet_pieces(body: bytes, where: str) -> Iterator[pd.DataFrame]:
    """The rows of a Parquet file, in record batches (one empty frame if it has none)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(body))
        if parquet.metadata.num_rows == 0:
            yield parquet.schema_arrow.empty_table().to_pandas()
            return
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            yield pa.Table.from_batches([batch]).to_pandas()
    except (pa.ArrowException, OSError) as error:
        raise RawDataError(f"{where} cannot be read as Parquet: {_first_line(error)}") from None


def _csv_pieces(
    body: bytes, where: str, uri: str, spec: PipelineSpec, options: CsvOptions
) -> Iterator[pd.DataFrame]:
    """The rows of a CSV file, in chunks.

    Text columns (categorical features, the id, ``dtypes: text``) are read as text, so ``007``
    stays ``007``; the others are parsed by pandas and normalised afterwards.
    """
    import csv
    import io

    import pandas as pd

    text = {c: str for c, kind in column_types(spec).items() if kind == "text"}
    compression = options.compression
    if compression == "infer":
        compression = "gzip" if uri.endswith(".gz") else "none"
    try:
        reader = pd.read_csv(
            io.BytesIO(body),
            sep=options.delimiter,
            header=0 if options.header else None,
            names=list(options.columns) or None,
            encoding=options.encoding,
            compression=None if compression == "none" else compression,
            dtype=text,
            chunksize=CHUNK_ROWS,
            quoting=csv.QUOTE_MINIMAL,
        )
        with reader:
            yield from reader
    except pd.errors.EmptyDataError:
        return
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as error:
        reason = _first_line(error).replace("Error tokenizing data. C error: ", "")
        raise RawDataError(f"{where} cannot be read as CSV: {reason}") from None


def _file_pieces(
    spec: PipelineSpec, source: FilesSource, body: bytes, uri: str, where: str
) -> Iterator[pd.DataFrame]:
    if source.format == "csv":
        return _csv_pieces(body, where, uri, spec, source.csv)
    return _parquet_pieces(body, where)


def file_columns(
    spec: PipelineSpec, source: FilesSource, body: bytes, uri: str, columns: list[str]
) -> Iterator[pd.DataFrame]:
    """Only ``columns`` of one data file of ``source`` (its format: Parquet or CSV), unchecked.

    For readers that need a few columns of many files (the performance monitor's labels):
    Parquet reads just those columns (text as ``string[pyarrow]``), CSV is parsed in chunks like
    any source file (text columns stay text). A file lacking one of them yields nothing.

    Raises:
        RawDataError: The file does not open in the source's format.
    """
    import io

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"file {uri}"
    if source.format == "csv":
        for piece in _csv_pieces(body, where, uri, spec, source.csv):
            if set(columns) <= set(piece.columns):
                yield piece[columns]
        return
    try:
        parquet = pq.ParquetFile(io.BytesIO(body))
        if set(columns) <= set(parquet.schema_arrow.names):
            # Text as Arrow strings (``string[pyarrow]``): a million ids as Python objects
            # would take ~80 MB more than the column itself.
            arrow_text = {pa.string(): pd.StringDtype("pyarrow"),
                          pa.large_string(): pd.StringDtype("pyarrow")}  # fmt: skip
            yield parquet.read(columns=columns).to_pandas(types_mapper=arrow_text.get)
    except (pa.ArrowException, OSError) as error:
        raise RawDataError(f"{where} cannot be read as Parquet: {_first_line(error)}") from None


def _check_kinds(
    kinds: dict[str, tuple[str, str]], frame: pd.DataFrame, columns: list[str], where: str
) -> None:
    """Each column keeps one kind across pieces; ``kinds`` remembers the first seen."""
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


class _Merger:
    """Checks and normalises each piece of raw data and streams it into the snapshot file.

    ``require_target=False`` takes rows to score: the target may be absent.
    """

    def __init__(
        self, spec: PipelineSpec, writer: SnapshotWriter, require_target: bool = True
    ) -> None:
        self.spec = spec
        self.writer = writer
        self.require_target = require_target
        self.kinds: dict[str, tuple[str, str]] = {}

    def add(self, frame: pd.DataFrame, where: str) -> int:
        """Check, normalise and write one piece; returns its number of rows."""
        frame = check_frame(self.spec, frame, where, self.require_target)
        if frame.empty:
            return 0
        schema = self.spec.schema_
        present = [c for c in (*schema.features, schema.target) if c in frame.columns]
        _check_kinds(self.kinds, frame, present, where)
        self.writer.add(normalise(self.spec, frame, where), where)
        return len(frame)


def _partition_files(
    settings: Settings, source: FilesSource, bucket: str, units: list[datetime]
) -> dict[datetime, list[str]]:
    """The data files of each partition (day or hour) of the window, found by listing each day."""
    from trainyard.core import storage

    layout = source.layout
    assert layout is not None
    files: dict[datetime, list[str]] = {unit: [] for unit in units}
    root = f"{source.prefix}/"
    for day in sorted({unit.date() for unit in units}):
        for key in storage.list_keys(settings, bucket, root + layout.day_folder(day)):
            moment = layout.moment_of(key[len(root) :])
            if moment in files and key.endswith(source.suffixes):
                files[moment].append(key)
    return files


def _unit_label(moment: datetime, hourly: bool) -> str:
    return f"{moment:%Y-%m-%dT%H}h" if hourly else moment.date().isoformat()


def read_partitions(
    spec: PipelineSpec, settings: Settings, window: TrainingWindow, merger: _Merger
) -> int:
    """Read a partitioned source's window, checking each file (or chunk) before merging.

    Returns:
        The number of files read (their rows went to ``merger``, oldest partition first).

    Raises:
        MissingPartitionsError: Listing every day (or hour) without a file.
        RawDataError: A file that does not open, lacks a declared column or holds unparseable
            values, an empty partition, or a column whose kind changes between files.
    """
    from trainyard.core import storage

    source = spec.source
    layout = source.layout
    bucket = raw_bucket(spec, settings)
    days = [datetime.combine(day, time()) for day in window.days()]
    units = window.hours() if layout.hourly else days
    files = _partition_files(settings, source, bucket, units)
    missing = [_unit_label(unit, layout.hourly) for unit, keys in files.items() if not keys]
    if missing:
        raise MissingPartitionsError(f"s3://{bucket}/{source.prefix}/", missing)
    read = 0
    for unit, keys in files.items():
        label = _unit_label(unit, layout.hourly)
        seen: dict[str, str] = {}
        rows = 0
        for key in keys:
            uri = f"s3://{bucket}/{key}"
            body = storage.get_bytes(settings, uri)
            digest = hashlib.sha256(body).hexdigest()
            if digest in seen:
                log.warning("%s has the same bytes as %s; reading them once", uri, seen[digest])
                continue
            seen[digest] = uri
            where = f"partition {label} file {uri}"
            file_rows = sum(
                merger.add(piece, where) for piece in _file_pieces(spec, source, body, uri, where)
            )
            if not file_rows:
                log.warning("%s holds no rows; skipped", where)
                continue
            rows += file_rows
            read += 1
        if not rows:
            folder = f"s3://{bucket}/{source.prefix}/{layout.folder(unit)}"
            raise RawDataError(f"partition {label} ({folder}) holds no rows")
    return read


def read_static_files(spec: PipelineSpec, settings: Settings, merger: _Merger) -> int:
    """Read every file of a static source: the one file its prefix names, or all under it.

    Returns:
        The number of files read (their rows went to ``merger``, in key order).

    Raises:
        RawDataError: No file is there, or one cannot be read or does not fit the schema.
    """
    from trainyard.core import storage

    source = spec.source
    bucket = raw_bucket(spec, settings)
    single = source.prefix.endswith(source.suffixes)
    listed = storage.list_keys(settings, bucket, source.prefix + ("" if single else "/"))
    keys = [k for k in listed if (k == source.prefix if single else k.endswith(source.suffixes))]
    if not keys:
        what = "file" if single else f"{source.format} file under"
        raise RawDataError(f"no {what} s3://{bucket}/{source.prefix} (static source)")
    for key in keys:
        uri = f"s3://{bucket}/{key}"
        where = f"file {uri}"
        body = storage.get_bytes(settings, uri)
        for piece in _file_pieces(spec, source, body, uri, where):
            merger.add(piece, where)
    return len(keys)


def read_sql(spec: PipelineSpec, window: TrainingWindow, merger: _Merger) -> int:
    """Read a SQL source's rows for the window, checking and normalising chunk by chunk.

    Returns:
        1 (one query); the rows went to ``merger``.

    Raises:
        trainyard.data.sql.SqlSourceError: The connection is not configured, or the database
            refuses the query.
        RawDataError: A chunk lacks a declared column or holds a value that does not parse,
            naming the query, the chunk's rows, the column and the value.
    """
    from trainyard.data import sql

    first = 1
    for chunk in sql.read_chunks(spec.source, window):
        where = f"{sql.describe(spec.source)} rows {first}-{first + len(chunk) - 1}"
        merger.add(chunk, where)
        first += len(chunk)
    return 1


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
    spec: PipelineSpec,
    settings: Settings,
    window: TrainingWindow,
    writer: SnapshotWriter,
    require_target: bool = True,
) -> int:
    """Read the raw data a window covers, from whichever source the spec names, into ``writer``.

    ``require_target=False`` reads rows to score: the target may be absent.

    Returns:
        The number of source files (1 for a query or a bundled dataset).
    """
    source = spec.source
    merger = _Merger(spec, writer, require_target)
    if source.kind == "sql":
        return read_sql(spec, window, merger)
    if source.kind == "sklearn_dataset":
        merger.add(read_sklearn_dataset(source.dataset), f"scikit-learn dataset {source.dataset!r}")
        return 1
    if source.layout is None:
        return read_static_files(spec, settings, merger)
    return read_partitions(spec, settings, window, merger)


def ingest(
    spec: PipelineSpec, settings: Settings, window: TrainingWindow, require_target: bool = True
) -> SnapshotRef:
    """Read the window's raw data and write its snapshot.

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint.
        window: Which days to read.
        require_target: False for rows to score (batch scoring): the target may be absent.

    Returns:
        Reference to the (possibly pre-existing) snapshot.

    Raises:
        MissingPartitionsError: Some partitions of the window are absent.
        RawDataError: A partition file is unreadable or does not fit the spec's schema.
        EmptyWindowError: The window holds no rows.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="trainyard-snapshot-") as directory:
        writer = SnapshotWriter(Path(directory))
        sources = read_window(spec, settings, window, writer, require_target)
        if not writer.rows:
            raise EmptyWindowError(f"window {window.label()} of {spec.name!r} holds no rows")
        return store_snapshot(settings, spec.name, writer, window, sources)
