"""``trainyard init``: draft a pipeline spec and an expectation suite from a sample of the data.

It finds the files under an S3 prefix (or the one file a URI names), recognises a partition
layout from their paths, reads a sample of the newest files, and guesses each column's role:
the target (given), an id (unique per row, an id-like name), a timestamp (dates), numeric and
categorical features, and columns left out (constant, empty, another id or timestamp, text of
high cardinality). The suite holds what the sample showed: null rates (as ``mostly``), ranges and
value sets (as warnings: a sample is not a rule). Every guess is reported with its reason; the
drafts are starting points to review, never written over existing files.

:func:`guess` and the document builders are pure; :func:`draft` does the I/O.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainyard.core.errors import DeterministicError
from trainyard.core.spec import FILE_SUFFIXES
from trainyard.core.storage import S3Uri
from trainyard.data.layouts import Layout

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings

#: Layouts recognised in paths, hourly ones first (a daily pattern also matches hourly folders).
KNOWN_LAYOUTS = (
    "date=YYYY-MM-DD/hour=HH",
    "dt=YYYY-MM-DD/hour=HH",
    "dt=YYYYMMDD/hour=HH",
    "year=YYYY/month=MM/day=DD/hour=HH",
    "YYYY/MM/DD/HH",
    "date=YYYY-MM-DD",
    "dt=YYYY-MM-DD",
    "dt=YYYYMMDD",
    "year=YYYY/month=MM/day=DD",
    "YYYY/MM/DD",
    "YYYY-MM-DD",
)
#: Text columns with more distinct values than this (in the sample) are left out.
MAX_CATEGORIES = 50
#: A whole-number target with at most this many distinct values is a classification target.
MAX_CLASSES = 20
_ID_NAME = re.compile(r"(^|_)(id|uuid|key)$|id$", re.IGNORECASE)


class DraftError(DeterministicError):
    """The sample cannot be drafted from (no files, no target column, files exist already)."""


@dataclass
class Guess:
    """What the sample suggests: each column's role, the task, and why."""

    target: str
    task: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    id_column: str | None = None
    timestamp_column: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        """The declared columns."""
        roles = [self.id_column, self.timestamp_column, *self.numeric, *self.categorical]
        return [c for c in roles if c] + [self.target]


@dataclass(frozen=True)
class Located:
    """Where the data is and how it is laid out."""

    bucket: str
    prefix: str
    format: str
    partitioning: str | None
    keys: list[str]
    delimiter: str = ","


# ---- finding and sampling the files ------------------------------------------------------------


def _format_of(key: str) -> str | None:
    return next((f for f, suffixes in FILE_SUFFIXES.items() if key.endswith(suffixes)), None)


def locate(settings: Settings, uri: str, partitioning: str | None = None) -> Located:
    """Find the data files a URI names and their layout.

    Args:
        settings: S3 endpoint and credentials.
        uri: ``s3://bucket/prefix`` (a folder) or ``s3://bucket/key.csv`` (one file).
        partitioning: The layout, when the paths do not show a known one.

    Raises:
        DraftError: Not an s3:// URI, no Parquet or CSV file there, or files of both formats.
    """
    from trainyard.core import storage

    try:
        target = S3Uri.parse(uri)
    except ValueError as error:
        raise DraftError(f"--source {uri!r}: {error}") from None
    prefix = target.key.strip("/")
    if _format_of(prefix):
        listed = storage.list_keys(settings, target.bucket, prefix)
        if prefix not in listed:
            raise DraftError(f"--source {uri}: no such file")
        return Located(target.bucket, prefix, _format_of(prefix) or "", None, [prefix])
    keys = [k for k in storage.list_keys(settings, target.bucket, prefix + "/") if _format_of(k)]
    if not keys:
        raise DraftError(f"--source {uri}: no .parquet or .csv file under it")
    formats = sorted({_format_of(k) for k in keys})
    if len(formats) > 1:
        raise DraftError(f"--source {uri}: holds both {' and '.join(formats)} files; pick one")
    relative = [k[len(prefix) + 1 :] for k in keys]
    if partitioning is None:
        partitioning = next(
            (p for p in KNOWN_LAYOUTS if all(Layout(p).moment_of(r) for r in relative)), None
        )
    elif not all(Layout(partitioning).moment_of(r) for r in relative):
        raise DraftError(f"--partitioning {partitioning!r} does not match {keys[0]}")
    return Located(target.bucket, prefix, formats[0], partitioning, keys)


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_sample(settings: Settings, located: Located, rows: int) -> tuple[pd.DataFrame, Located]:
    """Up to ``rows`` rows from the newest files (last in key order), and the CSV delimiter.

    Returns:
        The sample, and ``located`` with the delimiter a CSV sample showed.
    """
    import gzip

    import pandas as pd
    import pyarrow.parquet as pq

    from trainyard.core import storage

    frames, total = [], 0
    for key in reversed(located.keys):
        body = storage.get_bytes(settings, f"s3://{located.bucket}/{key}")
        if located.format == "parquet":
            frame = pq.read_table(io.BytesIO(body)).to_pandas()
        else:
            text = gzip.decompress(body) if key.endswith(".gz") else body
            delimiter = _sniff_delimiter(text[:16384].decode("utf-8", errors="replace"))
            located = replace(located, delimiter=delimiter)
            frame = pd.read_csv(io.BytesIO(text), sep=delimiter, nrows=rows - total)
        frames.insert(0, frame.head(rows - total))
        total += len(frames[0])
        if total >= rows:
            break
    return pd.concat(frames, ignore_index=True), located


# ---- guessing (pure) -----------------------------------------------------------------------


def _looks_like_dates(values: pd.Series) -> bool:
    import warnings

    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return True
    if not pd.api.types.is_object_dtype(values.dtype) and not pd.api.types.is_string_dtype(
        values.dtype
    ):
        return False
    present = values.dropna().astype(str).head(1000)
    if present.empty or not present.str.contains(r"\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4}").all():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(present, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def guess(frame: pd.DataFrame, target: str) -> Guess:
    """Each column's role, from a sample.

    Args:
        frame: The sample as read.
        target: The column to predict.

    Returns:
        The roles, the task and a reason for every guess.

    Raises:
        DraftError: The target is not a column, or holds no value.
    """
    import pandas as pd

    types = pd.api.types
    if target not in frame.columns:
        columns = [str(c) for c in frame.columns]
        raise DraftError(f"--target {target!r} is not a column; the sample has {columns}")
    labels = frame[target].dropna()
    if labels.empty:
        raise DraftError(f"--target {target!r} holds no value in the sample")
    rows = len(frame)
    whole = types.is_numeric_dtype(labels.dtype) and bool((labels % 1 == 0).all())
    if types.is_bool_dtype(labels.dtype) or not types.is_numeric_dtype(labels.dtype):
        task, why = "classification", "it holds text or booleans"
    elif whole and labels.nunique() <= MAX_CLASSES:
        task, why = "classification", f"it holds {labels.nunique()} whole-number values"
    else:
        task, why = "regression", "it holds continuous numbers"
    result = Guess(target=target, task=task)
    result.reasons.append(f"target {target!r}: {task}, because {why}")
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column]
        present = values.dropna()
        distinct = present.nunique()
        name = str(column)

        def leave(why: str, column: str = name) -> None:
            result.left_out[column] = why
            result.reasons.append(f"{column!r}: left out, {why}")

        if present.empty:
            leave("empty in the sample")
        elif distinct == 1:
            leave(f"constant ({present.iloc[0]!r}) in the sample")
        elif _looks_like_dates(values):
            if result.timestamp_column is None:
                result.timestamp_column = name
                result.reasons.append(f"{name!r}: timestamp, its values parse as dates")
            else:
                leave(f"another timestamp (the first, {result.timestamp_column!r}, is declared)")
        elif _ID_NAME.search(name) and distinct >= 0.95 * len(present):
            if result.id_column is None:
                result.id_column = name
                result.reasons.append(f"{name!r}: id, an id-like name and unique per row")
            else:
                leave(f"id-like (unique per row, like {result.id_column!r})")
        elif types.is_bool_dtype(values.dtype) or types.is_numeric_dtype(values.dtype):
            result.numeric.append(name)
            result.reasons.append(f"{name!r}: numeric feature")
        elif distinct > MAX_CATEGORIES:
            if distinct >= 0.95 * len(present) and result.id_column is None:
                result.id_column = name
                result.reasons.append(f"{name!r}: id, text unique per row")
            else:
                leave(f"high cardinality: {distinct} distinct values in {rows} rows")
        else:
            result.categorical.append(name)
            result.reasons.append(f"{name!r}: categorical feature, {distinct} distinct values")
    if not result.numeric and not result.categorical:
        raise DraftError("no column is left to learn from; see the reasons above")
    return result


# ---- the documents (pure) --------------------------------------------------------------------


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _mostly(null_rate: float) -> float:
    """The share of non-null values to require: what the sample showed, less 5 points."""
    return max(0.01, math.floor((1 - null_rate) * 100 - 5) / 100)


def suite_document(frame: pd.DataFrame, found: Guess) -> dict[str, Any]:
    """The draft expectation suite: columns, null rates, ranges and value sets of the sample."""
    expectations: list[dict[str, Any]] = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}
    ]
    for column in found.kept:
        expectations.append({"type": "expect_column_to_exist", "kwargs": {"column": column}})
        null_rate = float(frame[column].isna().mean())
        not_null: dict[str, Any] = {"column": column}
        if null_rate > 0:
            not_null["mostly"] = _mostly(null_rate)
        expectations.append({"type": "expect_column_values_to_not_be_null", "kwargs": not_null})
    for column in found.numeric:
        low, high = frame[column].min(), frame[column].max()
        margin = (float(high) - float(low)) * 0.1
        expectations.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": column,
                    "min_value": _plain(math.floor(float(low) - margin)),
                    "max_value": _plain(math.ceil(float(high) + margin)),
                    "mostly": 0.99,
                },
                "severity": "warning",
            }
        )
    sets = list(found.categorical)
    if found.task == "classification":
        sets.append(found.target)
    for column in sets:
        seen = sorted({_plain(v) for v in frame[column].dropna()}, key=str)
        if column in found.categorical:
            seen = [str(v) for v in seen]
        expectations.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": column, "value_set": seen, "mostly": 0.95},
                "severity": "warning",
            }
        )
    if found.id_column:
        expectations.append(
            {
                "type": "expect_column_values_to_be_unique",
                "kwargs": {"column": found.id_column},
                "severity": "warning",
            }
        )
    return {"expectations": expectations}


def _metrics(task: str, classes: int, text_labels: bool) -> list[str]:
    if task == "regression":
        return ["r2", "rmse", "mae"]
    if classes > 2:
        return ["accuracy", "balanced_accuracy", "roc_auc"]
    # f1, precision and recall need a positive class, which text labels do not say.
    return ["roc_auc", "accuracy", "balanced_accuracy" if text_labels else "f1"]


def spec_document(name: str, located: Located, found: Guess, frame: pd.DataFrame) -> dict[str, Any]:
    """The draft pipeline spec."""
    import pandas as pd

    source: dict[str, Any] = {"kind": "files", "prefix": located.prefix, "format": located.format}
    if located.bucket:
        source["bucket"] = located.bucket
    if located.format == "csv" and located.delimiter != ",":
        source["csv"] = {"delimiter": located.delimiter}
    layout = Layout(located.partitioning) if located.partitioning else None
    if layout:
        source["partitioning"] = located.partitioning
    schema: dict[str, Any] = {
        "numeric_features": found.numeric,
        "categorical_features": found.categorical,
        "target": found.target,
    }
    if found.id_column:
        schema["id_column"] = found.id_column
    if found.timestamp_column:
        schema["timestamp_column"] = found.timestamp_column
    labels = frame[found.target].dropna()
    regression = found.task == "regression"
    estimator = "HistGradientBoosting" + ("Regressor" if regression else "Classifier")
    metrics = _metrics(
        found.task, labels.nunique(), not pd.api.types.is_numeric_dtype(labels.dtype)
    )
    document: dict[str, Any] = {
        "name": name,
        "description": f"Drafted by `trainyard init` from s3://{located.bucket}/{located.prefix};"
        " review before use.",
        "tags": ["draft"],
        "schedule": None if layout is None else ("15 * * * *" if layout.hourly else "0 2 * * *"),
        "source": source,
    }
    if layout is not None:
        document["window"] = {"hours": 24} if layout.hourly else {"days": 28}
    document.update(
        {
            "schema": schema,
            "model": {
                "task": found.task,
                "estimator": f"sklearn.ensemble.{estimator}",
                "params": {"random_state": 0},
            },
            "split": {"test_size": 0.2, "seed": 42},
            "metrics": metrics,
            "gate": {"champion_metric": metrics[0], "max_regression": 0.01},
            "validation": {"suite": name},
        }
    )
    if layout is None:
        document["drift"] = {"schedule": None}
    return document


# ---- I/O -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drafted:
    """What ``trainyard init`` wrote and why."""

    spec_path: Path
    suite_path: Path
    guess: Guess
    located: Located
    sample_rows: int


def draft(
    settings: Settings,
    name: str,
    uri: str,
    target: str,
    partitioning: str | None = None,
    sample_rows: int = 50_000,
) -> Drafted:
    """Write a draft spec and suite for ``name`` from a sample of the data at ``uri``.

    Args:
        settings: S3 access, and where specs and suites live.
        name: The pipeline name (also the suite's).
        uri: The data: an S3 prefix or one file.
        target: The column to predict.
        partitioning: The layout, when the paths do not show a known one.
        sample_rows: How many rows to read (the newest files first).

    Returns:
        The files written and the guesses.

    Raises:
        DraftError: A file exists already, or the data cannot be drafted from.
        trainyard.core.spec.SpecError: The draft does not validate (a name that is not allowed).
    """
    from trainyard.core.spec import parse_spec

    spec_path = settings.pipelines_dir / f"{name}.yaml"
    suite_path = settings.expectations_dir / f"{name}.json"
    existing = [str(p) for p in (spec_path, suite_path) if p.exists()]
    if existing:
        raise DraftError(f"refusing to overwrite {' and '.join(existing)}; remove or rename first")
    located = locate(settings, uri, partitioning)
    frame, located = read_sample(settings, located, sample_rows)
    found = guess(frame, target)
    document = spec_document(name, located, found, frame)
    parse_spec(document, spec_path)  # the draft must load; refuses e.g. a bad name
    header = "\n".join(
        [
            f"# Drafted by `trainyard init` from {uri} ({len(frame)} sample rows). Review it:",
            *[f"#   {reason}" for reason in found.reasons],
            "# Add gate floors once you know what a good model scores.",
        ]
    )
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    suite_path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(document, sort_keys=False, width=100, default_flow_style=None)
    spec_path.write_text(header + "\n" + body)
    suite_path.write_text(json.dumps(suite_document(frame, found), indent=2) + "\n")
    return Drafted(spec_path, suite_path, found, located, len(frame))
