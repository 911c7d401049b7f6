"""Data validation with a Great Expectations suite stored as JSON in the repo.

Results are stored on S3 under a key derived from the snapshot hash and the suite hash, so the
same data checked by the same suite is validated once:
``s3://<artifacts>/validation/<pipeline>/<snapshot sha256>/<suite sha256[:16]>/result.json``
with the Data Docs site beside it in ``data_docs/``.

Expectations with ``"severity": "warning"`` (or ``"info"``) are reported but do not fail the run.

A suite is checked like a spec (:func:`check_suite`): every expectation must have a known type,
known arguments and a valid severity, or the suite is refused naming the file, the expectation's
index and the field. Great Expectations itself logs and *drops* an invalid expectation, which
would let a run pass without it. The check needs GX (~7 s to import), so it runs in
``trainyard specs``, the DAG integrity tests and at the start of the validate step, not at DAG
parse time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from trainyard.core.errors import DeterministicError

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotFile, SnapshotRef

log = logging.getLogger(__name__)

_SAMPLE_SIZE = 5


class ExpectationOutcome(BaseModel):
    """One expectation that did not hold."""

    model_config = ConfigDict(frozen=True)

    expectation: str
    column: str | None
    severity: str
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: list[Any] = []
    kwargs: dict[str, Any] = {}

    def describe(self) -> str:
        """One human-readable line."""
        where = self.column or "table"
        bounds = {k: v for k, v in self.kwargs.items() if k not in {"column", "batch_id"}}
        detail = f"{where}: {self.expectation}"
        if bounds:
            detail += " (" + ", ".join(f"{k}={v}" for k, v in sorted(bounds.items())) + ")"
        if self.unexpected_count is not None:
            detail += f": {self.unexpected_count} unexpected"
            if self.unexpected_percent is not None:
                detail += f" ({self.unexpected_percent:.2f}%)"
        if self.sample:
            detail += f", e.g. {self.sample}"
        return detail


class ValidationReport(BaseModel):
    """Verdict of a suite on a snapshot, and where the full result and Data Docs are."""

    model_config = ConfigDict(frozen=True)

    success: bool
    suite: str
    suite_sha256: str
    snapshot_sha256: str
    evaluated: int
    failures: list[ExpectationOutcome]
    warnings: list[ExpectationOutcome]
    result_uri: str
    data_docs_uri: str | None

    def failure_message(self) -> str:
        """Multi-line message listing every failed critical expectation."""
        lines = [
            f"data validation failed: {len(self.failures)} of {self.evaluated} expectations "
            f"in suite {self.suite!r} failed on snapshot {self.snapshot_sha256[:12]}:"
        ]
        lines += [f"  - {failure.describe()}" for failure in self.failures]
        lines.append(f"full result: {self.result_uri}")
        if self.data_docs_uri:
            lines.append(f"data docs: {self.data_docs_uri}")
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        """Lineage tags naming the validation result and its Data Docs page."""
        return {
            "validation_result_uri": self.result_uri,
            "validation_success": str(self.success).lower(),
            "validation_suite": f"{self.suite}@{self.suite_sha256[:16]}",
            "data_docs_uri": self.data_docs_uri or "",
        }


class SuiteError(DeterministicError):
    """An expectation suite file is missing or malformed; the message names the file."""


#: What GX 1.x accepts as an expectation's ``severity``.
SEVERITIES = ("critical", "warning", "info")

#: The keys of an expectation in a suite file (GX's ExpectationConfiguration fields).
_EXPECTATION_KEYS = frozenset(
    {"type", "kwargs", "meta", "notes", "description", "severity", "id", "rendered_content"}
    | {"success_on_last_run", "expectation_context"}
)
_SUITE_KEYS = frozenset({"name", "id", "expectations", "meta", "notes", "suite_parameters"})


class ValidationFailed(DeterministicError):
    """The snapshot failed a critical expectation; the message lists each one.

    Attributes:
        report: The stored report (its result and Data Docs stay linkable from the failed task).
    """

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.failure_message())
        self.report = report


def check_validation(report: ValidationReport) -> ValidationReport:
    """Pass a successful report through; raise with every failed expectation otherwise.

    Warnings are logged and do not stop the run.

    Raises:
        ValidationFailed: A critical expectation failed.
    """
    for warning in report.warnings:
        log.warning("expectation failed with severity %s: %s", warning.severity, warning.describe())
    if not report.success:
        raise ValidationFailed(report)
    return report


def suite_path(settings: Settings, suite: str) -> Path:
    """Where a named suite's JSON lives."""
    return settings.expectations_dir / f"{suite}.json"


def load_suite_json(settings: Settings, suite: str) -> tuple[dict[str, Any], str]:
    """Read a suite file.

    Returns:
        The suite document and the sha256 of the file.

    Raises:
        SuiteError: No such file, or it is not a JSON object with an ``expectations`` list.
    """
    path = suite_path(settings, suite)
    if not path.is_file():
        raise SuiteError(f"expectation suite {suite!r} not found at {path}")
    body = path.read_bytes()
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("expectations"), list):
        raise SuiteError(f"expectation suite {path} must be an object with an 'expectations' list")
    document["name"] = suite
    return document, hashlib.sha256(body).hexdigest()


def _expectation_problems(index: int, expectation: Any) -> list[str]:
    """What is wrong with one expectation of a suite, each as ``field '...': why``."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    from great_expectations.exceptions import GreatExpectationsError
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    where = f"expectation {index}"
    if not isinstance(expectation, dict):
        return [f"{where}: must be an object with 'type' and 'kwargs', got {expectation!r}"]
    kind = expectation.get("type")
    if isinstance(kind, str):
        where = f"expectation {index} ({kind})"
    problems = [
        f"{where}: field {key!r}: unknown field; an expectation has {sorted(_EXPECTATION_KEYS)}"
        for key in sorted(set(expectation) - _EXPECTATION_KEYS)
    ]
    if not isinstance(kind, str) or not kind:
        return [*problems, f"{where}: field 'type': missing or not a string"]
    kwargs = expectation.get("kwargs", {})
    if not isinstance(kwargs, dict):
        return [*problems, f"{where}: field 'kwargs': must be an object, got {kwargs!r}"]
    severity = expectation.get("severity", "critical")
    if severity not in SEVERITIES:
        problems.append(
            f"{where}: field 'severity': {severity!r} is not one of {', '.join(SEVERITIES)}"
        )
    try:
        get_expectation_impl(kind)
    except GreatExpectationsError:
        return [*problems, f"{where}: field 'type': unknown expectation type {kind!r}"]
    if problems:
        return problems
    try:
        ExpectationConfiguration(
            type=kind, kwargs=kwargs, severity=severity, meta=expectation.get("meta")
        ).to_domain_obj()
    except GreatExpectationsError as error:
        return [f"{where}: {error}"]
    except ValueError as error:  # pydantic (v1 inside GX) validation of the arguments
        errors = getattr(error, "errors", None)
        if not callable(errors):
            return [f"{where}: {error}"]
        first_per_field: dict[str, str] = {}
        for item in errors():
            loc = [str(part) for part in item["loc"] if part != "__root__"]
            field = ".".join(["kwargs", *loc])
            first_per_field.setdefault(field, item["msg"])
        return [f"{where}: field {field!r}: {msg}" for field, msg in first_per_field.items()]
    return []


def check_suite(document: dict[str, Any], path: Path) -> None:
    """Check every expectation of a suite the way GX would build it, refusing instead of dropping.

    Args:
        document: The suite as read by :func:`load_suite_json`.
        path: Its file, for the message.

    Raises:
        SuiteError: One line per problem, naming the file, the expectation's index and the field.
    """
    problems = [
        f"field {key!r}: unknown field; a suite has {sorted(_SUITE_KEYS)}"
        for key in sorted(set(document) - _SUITE_KEYS)
    ]
    for index, expectation in enumerate(document["expectations"]):
        problems += _expectation_problems(index, expectation)
    if problems:
        raise SuiteError("\n".join(f"invalid expectation suite {path}: {p}" for p in problems))


def load_checked_suite(settings: Settings, suite: str) -> tuple[dict[str, Any], str]:
    """:func:`load_suite_json` followed by :func:`check_suite` (imports GX).

    Raises:
        SuiteError: The file is missing or malformed, or an expectation is invalid.
    """
    document, sha = load_suite_json(settings, suite)
    check_suite(document, suite_path(settings, suite))
    return document, sha


def _names_column(value: Any, column: str) -> bool:
    if isinstance(value, list | tuple):
        return column in value
    return value == column


def suite_without_column(document: dict[str, Any], column: str) -> dict[str, Any]:
    """The suite minus what it expects of one column (pure): for batches that lack it.

    Scoring batches may arrive without the target. ``expect_table_columns_to_match_set`` keeps
    its other columns; any other expectation naming the column (``column``, ``column_A``,
    ``column_list``, ...) is dropped.

    Args:
        document: A suite as read by :func:`load_suite_json`.
        column: The column to forget.

    Returns:
        A new document; the name says what was removed.
    """
    kept = []
    for expectation in document["expectations"]:
        kwargs = expectation.get("kwargs", {})
        if expectation.get("type") == "expect_table_columns_to_match_set":
            columns = [c for c in kwargs.get("column_set", []) if c != column]
            kept.append({**expectation, "kwargs": {**kwargs, "column_set": columns}})
        elif not any(_names_column(value, column) for value in kwargs.values()):
            kept.append(expectation)
    return {**document, "name": f"{document['name']}-without-{column}", "expectations": kept}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _outcome(result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    details = result.result or {}
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return ExpectationOutcome(
        expectation=config.type,
        column=kwargs.get("column"),
        severity=str(getattr(config.severity, "value", config.severity)),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        sample=_json_safe(list(details.get("partial_unexpected_list") or [])[:_SAMPLE_SIZE]),
        kwargs=_json_safe(kwargs),
    )


#: Pandas memory (bytes, strings counted with their objects) one Great Expectations pass may
#: hold. A snapshot within it is validated in one pass, as a whole frame; a larger one in passes
#: (:func:`plan_passes`). GX holds a few times a pass's memory while it runs (a copy of the
#: frame per expectation, masks, and for text columns hash tables of their values): 512 MB keeps
#: a pass of 1M rows × 21 churn columns whole; at 10M rows the step peaked at 2.8 GB (the id
#: column's uniqueness, a pass of its own).
PASS_BYTES = 512 * 2**20

#: Rows read to estimate each column's memory per row (the first rows of the snapshot).
_ESTIMATE_ROWS = 10_000

#: Expectations that read the column names only (checked on a frame without rows).
_NAMES_ONLY = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
#: Expectations that read the row count only (every pass holds every row).
_ROW_COUNT = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})
#: Column map expectations whose verdict on a row depends on that row's value only, and whose
#: GX result is built from counts (rows, nulls, unexpected) and the first unexpected values: run
#: on pieces of rows, their results add up exactly (:func:`_merged`). Null checks count over
#: every row; the others over non-null rows (GX's own rules). Not here, and so always given
#: whole columns: uniqueness, monotonicity, aggregates (mean, quantiles, unique counts, ...),
#: and map expectations with their own result rules (regex lists, value lengths between).
_NULL_CHECKS = frozenset({"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"})
_ROW_LOCAL = _NULL_CHECKS | frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_like_pattern",
        "expect_column_values_to_not_match_like_pattern",
        "expect_column_values_to_match_strftime_format",
        "expect_column_values_to_be_dateutil_parseable",
        "expect_column_values_to_be_json_parseable",
        "expect_column_value_lengths_to_equal",
    }
)
#: The arguments by which an expectation names the columns it reads.
_COLUMN_ARGUMENTS = ("column", "column_A", "column_B", "column_list")
#: How many unexpected values (and their row positions) a result keeps: GX's SUMMARY default.
_PARTIAL = 20


@dataclass(frozen=True)
class ValidationPass:
    """One Great Expectations run over part of a snapshot.

    Attributes:
        expectations: Positions of its expectations in the suite.
        columns: The columns it reads (None: every column).
        names_only: Read no rows: its expectations check the column names only.
        piece_rows: Run on pieces of this many rows and add the results up (row-local
            expectations only); None: every row at once.
    """

    expectations: tuple[int, ...]
    columns: tuple[str, ...] | None
    names_only: bool = False
    piece_rows: int | None = None


def _columns_read(expectation: dict[str, Any]) -> tuple[str, ...] | None:
    """The columns an expectation reads, () for the row count, None for the whole table."""
    kwargs = expectation.get("kwargs", {})
    if expectation.get("type") in _ROW_COUNT:
        return ()
    if kwargs.get("row_condition"):  # a condition may name any column
        return None
    named: list[str] = []
    for argument in _COLUMN_ARGUMENTS:
        value = kwargs.get(argument)
        named += list(value) if isinstance(value, list | tuple) else [value] if value else []
    return tuple(dict.fromkeys(named)) or None


def _row_local(expectation: dict[str, Any]) -> bool:
    kwargs = expectation.get("kwargs", {})
    return expectation.get("type") in _ROW_LOCAL and isinstance(kwargs.get("column"), str)


def plan_passes(
    expectations: list[dict[str, Any]],
    row_bytes: dict[str, float],
    rows: int,
    budget: int = PASS_BYTES,
) -> list[ValidationPass]:
    """How to validate a snapshot in passes that each hold at most ``budget`` bytes (pure).

    Every expectation gets the result a whole-frame validation gives. Row-local expectations
    (``_ROW_LOCAL``: not null, between, in set, regex, ...) run together on pieces of rows of
    the columns they read, and their per-piece results are added up exactly. Every other
    expectation (uniqueness, means, quantiles and other whole-column statistics, column pairs)
    sees every row of every column it reads: such columns are packed into passes within the
    budget, a column larger than the budget alone. Expectations of the column names run on a
    frame without rows; row counts ride along with the first whole-column pass. An
    expectation that may read any column (a ``row_condition``, or a kind naming no column)
    makes the whole suite one pass.

    Args:
        expectations: The suite's expectations.
        row_bytes: The snapshot's columns, in order, with their memory per row in pandas
            (:meth:`trainyard.data.snapshots.SnapshotFile.row_bytes`).
        rows: Its row count.
        budget: The most bytes a pass may hold (a single column may exceed it).

    Returns:
        The passes; one pass of every column when the snapshot fits in ``budget``.
    """
    everything = ValidationPass(tuple(range(len(expectations))), None)
    columns = list(row_bytes)
    if rows * sum(row_bytes.values()) <= budget:
        return [everything]
    names_only, row_counts, local, by_columns = [], [], [], {}
    for index, expectation in enumerate(expectations):
        read = _columns_read(expectation)
        if expectation.get("type") in _NAMES_ONLY:
            names_only.append(index)
        elif read is None:
            log.warning(
                "expectation %d (%s) may read any column: validating the whole snapshot at once",
                index,
                expectation.get("type"),
            )
            return [everything]
        elif not read:
            row_counts.append(index)
        elif _row_local(expectation):
            local.append(index)
        else:
            by_columns.setdefault(read, []).append(index)

    def size(names: list[str]) -> float:  # bytes of whole columns (unknown names: nothing)
        return rows * sum(row_bytes.get(c, 0.0) for c in names)

    packed: list[tuple[list[str], list[int]]] = []
    for read, indexes in by_columns.items():
        if packed and size(list(set(packed[-1][0]) | set(read))) <= budget:
            packed[-1][0].extend(c for c in read if c not in packed[-1][0])
            packed[-1][1].extend(indexes)
        else:
            packed.append((list(read), list(indexes)))
    if row_counts:
        if packed:
            packed[0][1].extend(row_counts)
        else:  # every row of the smallest column
            packed.append(([min(columns, key=lambda c: row_bytes[c])], row_counts))
    passes = [ValidationPass(tuple(sorted(i)), tuple(c)) for c, i in packed]
    if local:
        read = list(dict.fromkeys(expectations[i]["kwargs"]["column"] for i in local))
        per_row = sum(row_bytes.get(c, 0.0) for c in read)
        piece = max(1, int(budget // per_row)) if per_row else rows
        passes.append(ValidationPass(tuple(local), tuple(read), piece_rows=min(piece, rows)))
    if names_only:
        passes.append(ValidationPass(tuple(names_only), None, names_only=True))
    return passes


def run_suite(
    frame: pd.DataFrame, suite_document: dict[str, Any], docs_dir: Path | None = None
) -> tuple[dict[str, Any], list[ExpectationOutcome], list[ExpectationOutcome]]:
    """Run a suite on a frame in memory with Great Expectations, in one pass.

    Args:
        frame: The data.
        suite_document: Suite JSON (``name`` and ``expectations``).
        docs_dir: If given, a GX file project is created there and Data Docs are built.

    Returns:
        The full result as JSON, the failed critical expectations, the failed others.
    """
    whole = ValidationPass(tuple(range(len(suite_document["expectations"]))), None)
    return _run_passes(suite_document, [(whole, iter([frame]))], docs_dir)


def run_suite_on_snapshot(
    snapshot: SnapshotFile,
    suite_document: dict[str, Any],
    docs_dir: Path | None = None,
    budget: int = PASS_BYTES,
) -> tuple[dict[str, Any], list[ExpectationOutcome], list[ExpectationOutcome]]:
    """Run a suite on a snapshot file, reading only one pass's columns (or rows) at a time.

    The passes (:func:`plan_passes`) give each expectation the result of a whole-frame run;
    memory holds one pass's columns, or one piece of rows of them.

    Args:
        snapshot: The downloaded snapshot.
        suite_document: Suite JSON (``name`` and ``expectations``).
        docs_dir: If given, a GX file project is created there and Data Docs are built.
        budget: The most bytes (pandas memory) a pass may hold.

    Returns:
        As :func:`run_suite`; the JSON's ``meta.passes`` lists the passes when there are several.
    """
    row_bytes = snapshot.row_bytes(_ESTIMATE_ROWS)
    passes = plan_passes(suite_document["expectations"], row_bytes, snapshot.rows, budget)

    def frames(part: ValidationPass) -> Iterator[pd.DataFrame]:
        if part.names_only:
            yield snapshot.header()
        elif part.piece_rows is not None and set(part.columns or ()) & set(snapshot.columns):
            yield from snapshot.batches(list(part.columns or ()), part.piece_rows)
        else:
            yield snapshot.read(None if part.columns is None else list(part.columns))

    return _run_passes(suite_document, [(part, frames(part)) for part in passes], docs_dir)


def _raised(result: Any) -> bool:
    """Whether GX caught an exception computing an expectation (e.g. its column is missing)."""
    info = result.exception_info or {}
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _merged(pieces: list[Any]) -> Any:
    """One row-local expectation's results on consecutive pieces of rows, added up into the
    result GX gives on all the rows at once (same counts, percentages, verdict under
    ``mostly``, and first unexpected values with their row positions).

    Args:
        pieces: GX ``ExpectationValidationResult``s (SUMMARY format), in row order.

    Returns:
        One ``ExpectationValidationResult``; a piece where GX raised (e.g. a missing column)
        is returned as is, as the whole-frame run would have raised too.
    """
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import (
        _format_map_output,
        _mostly_success,
        parse_result_format,
    )

    if len(pieces) == 1:
        return pieces[0]
    for piece in pieces:
        if _raised(piece):
            return piece
    config = pieces[0].expectation_config
    parts = [piece.result for piece in pieces]
    element = sum(part["element_count"] for part in parts)
    unexpected = sum(part["unexpected_count"] for part in parts)
    values = [v for part in parts for v in part.get("partial_unexpected_list", [])]
    index_lists = [part.get("partial_unexpected_index_list") for part in parts]
    indexes = None
    if any(found is not None for found in index_lists):
        indexes = [i for found in index_lists for i in found or []][:_PARTIAL]
    mostly = config.kwargs.get("mostly", 1.0)
    if config.type in _NULL_CHECKS:  # GX: the share of all rows, missing ones not counted apart
        nonnull = None
        success = element == 0 or (element - unexpected) / element >= mostly
    else:
        nonnull = element - sum(part["missing_count"] for part in parts)
        success = element == 0 or nonnull == 0 or _mostly_success(nonnull, unexpected, mostly)
    formatted = _format_map_output(
        result_format=parse_result_format({"result_format": "SUMMARY"}),
        success=success,
        element_count=element,
        nonnull_count=nonnull,
        unexpected_count=unexpected,
        unexpected_list=values[:_PARTIAL],
        unexpected_index_list=indexes,
    )
    return ExpectationValidationResult(
        success=success,
        expectation_config=config,
        result=formatted["result"],
        meta=pieces[0].meta,
        exception_info=pieces[0].exception_info,
    )


def _run_passes(
    suite_document: dict[str, Any],
    passes: list[tuple[ValidationPass, Iterator[pd.DataFrame]]],
    docs_dir: Path | None,
) -> tuple[dict[str, Any], list[ExpectationOutcome], list[ExpectationOutcome]]:
    """Run each pass's expectations on its frames (each read just before, dropped just after)
    with Great Expectations (imported here, not at module level).

    Returns:
        As :func:`run_suite`, failures in the suite's order; with one pass on one frame the
        JSON is GX's own, otherwise it is combined (:func:`_combined`, suite order). Data Docs
        are built once, from the combined result.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.validator.v1_validator import Validator

    if docs_dir is None:
        context = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("snapshot")
        .add_dataframe_asset("snapshot")
        .add_batch_definition_whole_dataframe("whole")
    )
    # The data source's engine keeps every batch it was given: emptied after each frame, so
    # memory holds one frame, not all the pieces and passes seen so far.
    batches = context.data_sources.get("snapshot").get_execution_engine().batch_manager
    expectations = suite_document["expectations"]
    pieces: dict[int, list[Any]] = {}
    documents = []
    for number, (part, frames) in enumerate(passes, start=1):
        name = suite_document["name"]
        if len(passes) > 1:
            name = f"{name}.pass{number}of{len(passes)}"
        chosen = [expectations[i] for i in part.expectations]
        suite = context.suites.add(ExpectationSuite(name=name, expectations=chosen))
        # GX logs and drops an expectation it cannot build; a run must never pass without one.
        if len(suite.expectations) != len(chosen):
            raise SuiteError(
                f"expectation suite {suite_document['name']!r}: Great Expectations kept "
                f"{len(suite.expectations)} of {len(chosen)} expectations; "
                "run `trainyard specs` to see which are invalid"
            )
        # GX orders results its own way: match them to the suite's expectations by id.
        index_of = dict(zip((e.id for e in suite.expectations), part.expectations, strict=True))
        for frame in frames:
            result = Validator(
                batch_definition=batch,
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "SUMMARY"},
            ).validate_expectation_suite(suite)
            del frame
            batches.reset_batch_cache()
            batches.batch_data_cache.clear()
            for one in result.results:
                pieces.setdefault(index_of[one.expectation_config.id], []).append(one)
            documents.append(result)
    ordered = [_merged(pieces[i]) for i in range(len(expectations))]
    failed = [_outcome(r) for r in ordered if not r.success]
    critical = [f for f in failed if f.severity == "critical"]
    others = [f for f in failed if f.severity != "critical"]
    if len(documents) == 1:
        (combined,) = documents
    else:
        combined = _combined(documents[0], suite_document["name"], ordered, passes)
    if docs_dir is not None:
        _build_data_docs(context, combined)
    return _json_safe(combined.to_json_dict()), critical, others


def _combined(
    first: Any,
    suite_name: str,
    results: list[Any],
    passes: list[tuple[ValidationPass, Iterator[pd.DataFrame]]],
) -> Any:
    """One GX suite result for a suite validated in several passes, results in suite order."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )

    passed = sum(bool(r.success) for r in results)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=suite_name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        meta={
            **first.meta,
            "passes": [
                {
                    "expectations": list(part.expectations),
                    "columns": "all" if part.columns is None else list(part.columns),
                    "rows": (
                        "none"
                        if part.names_only
                        else "all"
                        if part.piece_rows is None
                        else f"pieces of {part.piece_rows}"
                    ),
                }
                for part, _ in passes
            ],
        },
        batch_id=first.batch_id,
    )


def _build_data_docs(context: Any, result: Any) -> None:
    """Store the (combined) suite result in the GX project and render its Data Docs page."""
    from datetime import UTC, datetime

    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
        run_id=RunIdentifier(run_name="trainyard", run_time=datetime.now(UTC)),
        batch_identifier="snapshot",
    )
    context.validation_results_store.set(key, result)
    context.build_data_docs(resource_identifiers=[key])


def result_prefix(settings: Settings, pipeline: str, snapshot_sha: str, suite_sha: str) -> str:
    """Deterministic S3 prefix of one (snapshot, suite) validation."""
    return f"s3://{settings.artifacts_bucket}/validation/{pipeline}/{snapshot_sha}/{suite_sha[:16]}"


def validate_snapshot(
    spec: PipelineSpec,
    settings: Settings,
    snapshot: SnapshotRef,
    frame: pd.DataFrame | None = None,
    without_target: bool = False,
) -> ValidationReport:
    """Validate a snapshot with the pipeline's suite; store result JSON and Data Docs on S3.

    A snapshot already validated by the same suite is not validated again: the stored report
    is returned.

    Args:
        spec: The pipeline (names the suite).
        settings: Buckets, endpoint, expectations directory.
        snapshot: The snapshot to check.
        frame: The snapshot's rows if already in memory (otherwise read from S3).
        without_target: Check rows to score: the suite minus its expectations on the target
            (:func:`suite_without_column`); its results are stored under their own suite hash.

    Returns:
        The report; ``success`` is False when any critical expectation failed.

    Raises:
        SuiteError: The suite is missing or invalid (checked before any data is read).
    """
    from trainyard.core import storage
    from trainyard.data.snapshots import open_snapshot

    document, suite_sha = load_checked_suite(settings, spec.validation.suite)
    if without_target:
        document = suite_without_column(document, spec.schema_.target)
        suite_sha = hashlib.sha256(f"{suite_sha}:{document['name']}".encode()).hexdigest()
    prefix = result_prefix(settings, spec.name, snapshot.sha256, suite_sha)
    report_uri = f"{prefix}/report.json"
    if storage.exists(settings, report_uri):
        return ValidationReport.model_validate_json(storage.get_bytes(settings, report_uri))

    with tempfile.TemporaryDirectory(prefix="trainyard-gx-") as workdir:
        if frame is not None:
            result, failures, warnings = run_suite(frame, document, Path(workdir))
        else:
            with open_snapshot(settings, snapshot.uri, snapshot.sha256) as rows:
                result, failures, warnings = run_suite_on_snapshot(rows, document, Path(workdir))
        site = Path(workdir) / "gx" / "uncommitted" / "data_docs" / "local_site"
        data_docs_uri = None
        if site.is_dir():
            storage.upload_directory(settings, site, f"{prefix}/data_docs")
            # One page: passes and pieces are combined into one result before rendering.
            (page,) = (site / "validations").rglob("*.html")
            data_docs_uri = f"{prefix}/data_docs/{page.relative_to(site).as_posix()}"
    result_uri = f"{prefix}/result.json"
    storage.put_bytes(
        settings, result_uri, json.dumps(result, indent=1).encode(), "application/json"
    )
    report = ValidationReport(
        success=not failures,
        suite=document["name"],
        suite_sha256=suite_sha,
        snapshot_sha256=snapshot.sha256,
        evaluated=len(result.get("results", [])),
        failures=failures,
        warnings=warnings,
        result_uri=result_uri,
        data_docs_uri=data_docs_uri,
    )
    # Written last: its presence marks the validation as complete.
    storage.put_bytes(settings, report_uri, report.model_dump_json().encode(), "application/json")
    return report


def validate(
    spec: PipelineSpec, settings: Settings, snapshot: SnapshotRef, without_target: bool = False
) -> ValidationReport:
    """The validate step: check a snapshot with the spec's suite and stop on a failure.

    ``without_target`` checks rows to score (see :func:`validate_snapshot`).

    Returns:
        The successful report (warnings logged).

    Raises:
        ValidationFailed: A critical expectation failed; the message lists each one.
    """
    report = validate_snapshot(spec, settings, snapshot, without_target=without_target)
    log.info("validation result: %s", report.result_uri)
    log.info("data docs: %s", report.data_docs_uri)
    return check_validation(report)
