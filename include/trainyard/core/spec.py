"""Pipeline specs: one YAML file per pipeline, validated into frozen, typed config.

This module must stay cheap to import: the DAG files import it at parse time. It uses
only pydantic and PyYAML, which Airflow has already imported.

Every name derived from a pipeline (DAG ids, MLflow experiments, the registered model) is a
property of :class:`PipelineSpec`, so it is spelled in one place.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainyard.core.errors import DeterministicError
from trainyard.core.metrics import default_leak_bounds, metrics_for
from trainyard.data.layouts import Layout

#: Evidently 0.7's drift tests (stattests) and the column kinds each accepts; a unit test
#: checks this against Evidently's own registry (not imported here: too slow for DAG parsing).
DRIFT_METHODS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("anderson", "cramer_von_mises", "ed", "es", "ks", "mannw", "empirical_mmd", "t_test",
         "wasserstein"),
        frozenset({"numeric"}),
    ),
    **dict.fromkeys(
        ("chisquare", "fisher_exact", "g_test", "TVD", "z"), frozenset({"categorical"})
    ),
    **dict.fromkeys(
        ("hellinger", "jensenshannon", "kl_div", "psi"), frozenset({"numeric", "categorical"})
    ),
}  # fmt: skip

_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")

Name = Annotated[str, Field(pattern=_NAME_PATTERN)]

# libyaml's loader parses ~10x faster than the pure-Python one; every DAG parse reads the specs.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecError(DeterministicError, ValueError):
    """A pipeline spec file is missing, unreadable or invalid; the message names file and field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: The endings of the data files of each format; other files under a prefix are ignored.
FILE_SUFFIXES = {
    "parquet": (".parquet",),
    "csv": (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz"),
}


class CsvOptions(_Frozen):
    """How CSV files are parsed (``source.format: csv``)."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = Field(default=True, description="Whether the first line names the columns.")
    columns: tuple[str, ...] = Field(
        default=(), description="Column names, in file order, for files without a header line."
    )
    encoding: str = "utf-8"
    compression: Literal["infer", "gzip", "none"] = Field(
        default="infer", description="infer: gzip for names ending in .gz, else none."
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _named_columns(self) -> CsvOptions:
        if not self.header and not self.columns:
            raise ValueError("files without a header line need 'columns' (names in file order)")
        if self.header and self.columns:
            raise ValueError("'columns' is only for files without a header line")
        return self


class FilesSource(_Frozen):
    """Parquet or CSV files on S3 under ``s3://<bucket>/<prefix>/``.

    With ``partitioning`` the files sit in one folder per day or hour (the pattern says where the
    date is in the path) and a run reads its window's folders; without it the source is static:
    every file under the prefix (or the one file the prefix names) is read and the window is
    ignored.
    """

    kind: Literal["files"]
    bucket: str | None = Field(
        default=None, description="Raw-data bucket; defaults to TRAINYARD_RAW_BUCKET."
    )
    prefix: str = Field(min_length=1)
    format: Literal["parquet", "csv"] = "parquet"
    csv: CsvOptions = CsvOptions()
    partitioning: str | None = Field(
        default=None,
        description="Where the date is in a file's path below the prefix, e.g. "
        "date=YYYY-MM-DD, year=YYYY/month=MM/day=DD, dt=YYYYMMDD, date=YYYY-MM-DD/hour=HH. "
        "None: a static source.",
    )
    on_missing_partitions: Literal["fail", "skip"] = Field(
        default="fail",
        description="fail: the ingest task fails naming the missing dates. "
        "skip: the run is skipped (nothing trained) when any partition is missing.",
    )

    @field_validator("prefix")
    @classmethod
    def _strip_slashes(cls, value: str) -> str:
        return value.strip("/")

    @field_validator("partitioning")
    @classmethod
    def _valid_layout(cls, value: str | None) -> str | None:
        if value is not None:
            Layout(value.strip("/"))
            return value.strip("/")
        return value

    @property
    def layout(self) -> Layout | None:
        """The partition layout, or None for a static source."""
        return Layout(self.partitioning) if self.partitioning else None

    @property
    def windowed(self) -> bool:
        """Whether a run reads a window (partitioned) rather than every file (static)."""
        return self.partitioning is not None

    @property
    def suffixes(self) -> tuple[str, ...]:
        """File names read (others, such as ``_SUCCESS`` markers, are ignored)."""
        return FILE_SUFFIXES[self.format]


_BOUND = re.compile(r"(?<![:\w]):(window_start|window_end)\b")


class SqlSource(_Frozen):
    """Rows of a SQL query, by a SQLAlchemy URL from the environment or an Airflow connection.

    A windowed query names the bound parameters ``:window_start`` (included) and ``:window_end``
    (excluded) and gets the run's window only through them; a query naming neither is static
    (the window is ignored). Rows are read ``chunk_rows`` at a time through a server-side cursor.
    """

    kind: Literal["sql"]
    url_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the SQLAlchemy URL (credentials stay out of "
        "the spec).",
    )
    conn_id: str | None = Field(default=None, description="Airflow connection id instead.")
    query: str = Field(min_length=1)
    chunk_rows: int = Field(default=100_000, ge=1000, le=10_000_000)

    @model_validator(mode="after")
    def _one_connection_and_both_bounds(self) -> SqlSource:
        if (self.url_env is None) == (self.conn_id is None):
            raise ValueError("set exactly one of url_env and conn_id")
        named = set(_BOUND.findall(self.query))
        if len(named) == 1:
            raise ValueError(
                f"query names :{named.pop()} only; a windowed query needs both :window_start "
                "and :window_end (a static query neither)"
            )
        return self

    @property
    def windowed(self) -> bool:
        """Whether the query reads a window (it names the bound parameters)."""
        return bool(_BOUND.search(self.query))


class SklearnDatasetSource(_Frozen):
    """A static dataset that ships with scikit-learn (no download); the window is ignored."""

    kind: Literal["sklearn_dataset"]
    dataset: Literal["breast_cancer", "wine", "iris", "diabetes"]

    @property
    def windowed(self) -> bool:
        """Never: a bundled dataset is read whole, whatever the window."""
        return False


Source = Annotated[FilesSource | SqlSource | SklearnDatasetSource, Field(discriminator="kind")]


def _legacy_source(value: object) -> object:
    """``kind: partitioned_parquet`` (the first source kind) is daily Parquet files."""
    if isinstance(value, dict) and value.get("kind") == "partitioned_parquet":
        return {**value, "kind": "files", "format": "parquet", "partitioning": "date=YYYY-MM-DD"}
    return value


class Window(_Frozen):
    """Which data a run trains on.

    ``days`` days ending ``end_offset_days`` before the run day; or, for hourly partitions,
    ``hours`` hours ending ``end_offset_hours`` before the run's hour (1: up to the last complete
    hour).
    """

    days: int = Field(default=28, ge=1, le=3660)
    end_offset_days: int = Field(default=1, ge=0, le=365)
    hours: int | None = Field(default=None, ge=1, le=24 * 366)
    end_offset_hours: int = Field(default=1, ge=0, le=24 * 365)

    @model_validator(mode="after")
    def _days_or_hours(self) -> Window:
        if self.hours is not None and self.model_fields_set & {"days", "end_offset_days"}:
            raise ValueError("set either days (and end_offset_days) or hours, not both")
        return self


#: Types a column can be normalised to (``schema.dtypes``).
ColumnType = Literal["number", "integer", "text", "boolean", "timestamp"]


class Schema(_Frozen):
    """Columns of the data; every feature must be declared here."""

    numeric_features: tuple[str, ...] = ()
    categorical_features: tuple[str, ...] = ()
    target: str
    id_column: str | None = None
    timestamp_column: str | None = None
    dtypes: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="Column -> type every source's values are normalised to (any column, "
        "declared or not), overriding the default of the column's role (numeric feature: "
        "number; categorical feature and id: text; timestamp: timestamp; target: number for "
        "regression, the classes' own kind for classification).",
    )

    @model_validator(mode="after")
    def _check_columns(self) -> Schema:
        features = self.numeric_features + self.categorical_features
        if not features:
            raise ValueError("declare at least one numeric or categorical feature")
        duplicates = sorted({c for c in features if features.count(c) > 1})
        if duplicates:
            raise ValueError(f"columns listed twice among features: {duplicates}")
        for role in ("target", "id_column", "timestamp_column"):
            column = getattr(self, role)
            if column is not None and column in features:
                raise ValueError(f"{role} {column!r} is also listed as a feature")
        return self

    @property
    def columns(self) -> tuple[str, ...]:
        """Every declared column, in snapshot order: id, timestamp, features, target."""
        roles = (self.id_column, self.timestamp_column, *self.features, self.target)
        return tuple(column for column in roles if column)

    @property
    def features(self) -> tuple[str, ...]:
        """All feature columns, numeric first."""
        return self.numeric_features + self.categorical_features


class Model(_Frozen):
    """The estimator, by import path, and its hyperparameters."""

    task: Literal["classification", "regression"] = "classification"
    estimator: str
    params: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    registered_name: str | None = Field(
        default=None, description="MLflow registered model name; defaults to the pipeline name."
    )
    drop_unlabeled: bool = Field(
        default=True,
        description="Drop rows whose target is still missing (labels that have not arrived yet).",
    )
    max_training_rows: int | None = Field(
        default=None,
        ge=100,
        description="At most this many training rows are fitted on: a larger training side is "
        "sampled with split.seed (the same rows for the same snapshot). The holdout is never "
        "sampled. What was sampled is a param, a run tag and a lineage tag (training_sample).",
    )
    skops_trusted_types: tuple[str, ...] = Field(
        default=(),
        description="Types beyond skops' defaults that the saved model may contain (e.g. "
        "tree classes). MLflow stores sklearn models with skops; list only types you reviewed.",
    )

    @field_validator("estimator")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if not _IMPORT_PATH.match(value):
            raise ValueError(f"{value!r} is not an import path like 'sklearn.linear_model.Ridge'")
        return value


class Split(_Frozen):
    """Holdout split: a row is holdout when a hash of its identity and the seed says so.

    The same row is on the same side in every run, so models trained on overlapping windows can
    be compared on a holdout none of them has trained on.
    """

    test_size: float = Field(default=0.2, gt=0, lt=1)
    seed: int = Field(default=42, ge=0)


class Gate(_Frozen):
    """Promotion rules: absolute floors and the allowed regression against the champion."""

    floors: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> bound. For greater-is-better metrics a minimum, else a maximum.",
    )
    champion_metric: str = Field(description="Metric the challenger is compared on.")
    max_regression: float = Field(
        default=0.0,
        ge=0,
        description="How much worse than the champion (absolute) the challenger may be.",
    )
    leak_ceilings: dict[str, float] | None = Field(
        default=None,
        description="Metric -> implausible value: a challenger at or beyond it (at or above for "
        "greater-is-better metrics, at or below otherwise) is rejected as a suspected leak. "
        "Unset: the metric table's defaults (e.g. roc_auc 0.999, log_loss 0.001, r2 0.999); "
        "a mapping replaces them; {} turns the check off.",
    )


class Promotion(_Frozen):
    """How a version that passed the gate becomes champion."""

    mode: Literal["auto", "approval"] = Field(
        default="auto",
        description="auto: it becomes champion at once. approval: it becomes 'challenger' and a "
        "person approves or rejects it in the Airflow UI (Required Actions).",
    )
    timeout: timedelta = Field(
        default=timedelta(hours=24),
        description="How long an approval waits (ISO 8601 duration such as PT24H, or seconds).",
    )
    on_timeout: Literal["reject", "approve"] = Field(
        default="reject", description="What happens when nobody answers in time (recorded)."
    )

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class Validation(_Frozen):
    """Which Great Expectations suite (include/expectations/<suite>.json) checks the data."""

    suite: Name


class Drift(_Frozen):
    """Settings for the drift monitor of this pipeline."""

    schedule: str | None = "0 * * * *"
    window_days: int = Field(default=1, ge=1, le=366)
    columns: tuple[str, ...] | None = Field(
        default=None, description="Columns to test; defaults to all features."
    )
    drift_share: float = Field(default=0.5, gt=0, le=1)
    method: str | None = None
    threshold: float | None = Field(default=None, gt=0)
    per_column_method: dict[str, str] = Field(default_factory=dict)
    per_column_threshold: dict[str, float] = Field(default_factory=dict)
    min_rows: int = Field(default=200, ge=1)
    sample_size: int | None = Field(default=None, ge=1)
    sample_seed: int = 0
    cooldown_hours: float = Field(default=6, ge=0)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str | None) -> str | None:
        if value is not None and value not in DRIFT_METHODS:
            raise ValueError(_unknown_method(value))
        return value

    @field_validator("per_column_method")
    @classmethod
    def _known_methods(cls, value: dict[str, str]) -> dict[str, str]:
        for column, method in value.items():
            if method not in DRIFT_METHODS:
                raise ValueError(f"column {column!r}: {_unknown_method(method)}")
        return value


class Scoring(_Frozen):
    """Batch scoring with the champion: which partitions, when (a spec without it gets no DAG).

    Predictions go to the prediction log (:mod:`trainyard.data.predictions`):
    ``s3://<artifacts>/predictions/<pipeline>/batch/date=YYYY-MM-DD/v<version>.parquet``.
    """

    schedule: str | None = Field(
        default="0 4 * * *", description="Cron of the scoring DAG, or null for manual runs only."
    )
    days: int = Field(default=1, ge=1, le=366, description="Partitions scored per run.")
    end_offset_days: int = Field(
        default=1,
        ge=0,
        le=365,
        description="The last partition scored is this many days before the run day.",
    )


class Labels(_Frozen):
    """Where the true outcomes of scored rows arrive, and how late.

    Labels are Parquet files holding the id column and the target, dated like the rows they
    label: ``s3://<bucket>/<prefix>/date=YYYY-MM-DD/*.parquet``, or without ``prefix`` the
    source's own partitions (its layout and format, Parquet or CSV), landed again later with
    the target filled.
    """

    prefix: str | None = Field(
        default=None,
        description="Partitions of id + target; default: the source's own, re-landed.",
    )
    bucket: str | None = Field(
        default=None, description="Bucket of ``prefix``; defaults to TRAINYARD_RAW_BUCKET."
    )
    delay_days: int = Field(
        default=7, ge=0, le=365, description="Days after a row's date until its label is due."
    )

    @field_validator("prefix")
    @classmethod
    def _strip_slashes(cls, value: str | None) -> str | None:
        return value.strip("/") if value else value


class Performance(_Frozen):
    """Realised performance of the champion on labelled predictions, and when it has decayed."""

    schedule: str | None = Field(
        default="0 6 * * *", description="Cron of the monitor, or null for manual runs only."
    )
    metric: str = Field(description="The metric watched (one of ``metrics``).")
    max_drop: float = Field(
        gt=0,
        description="Allowed drop from the champion's holdout value before a window breaches.",
    )
    drop: Literal["relative", "absolute"] = Field(
        default="relative",
        description="relative: max_drop is a fraction of the holdout value (0.03 = 3 %); "
        "absolute: in the metric's unit.",
    )
    window_days: int = Field(default=1, ge=1, le=366, description="Days per window.")
    min_labelled_rows: int = Field(
        default=200, ge=1, description="Fewer labelled predictions in a window: no verdict."
    )
    consecutive_windows: int = Field(
        default=1, ge=1, le=30, description="Windows in a row that must breach to call decay."
    )


def _unknown_method(method: str) -> str:
    return f"unknown drift method {method!r}; Evidently knows {sorted(DRIFT_METHODS)}"


class PipelineSpec(_Frozen):
    """One training pipeline: where its data is, how it is checked, trained and promoted."""

    name: Name
    description: str = ""
    owner: str = "ml-platform"
    intended_use: str = Field(
        default="",
        description="What the model is for and who may rely on it (shown on its model card).",
    )
    limitations: str = Field(
        default="",
        description="Known limits: populations, ranges or uses it was not built for (shown on "
        "its model card).",
    )
    tags: tuple[str, ...] = ()
    schedule: str | None = "0 2 * * *"
    source: Source
    window: Window = Window()
    schema_: Schema = Field(alias="schema")
    model: Model
    split: Split = Split()
    metrics: tuple[str, ...]
    gate: Gate
    validation: Validation
    drift: Drift = Drift()
    scoring: Scoring | None = None
    labels: Labels | None = None
    performance: Performance | None = None
    promotion: Promotion = Promotion()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("source", mode="before")
    @classmethod
    def _source_kind(cls, value: object) -> object:
        return _legacy_source(value)

    @model_validator(mode="after")
    def _check_consistency(self) -> PipelineSpec:
        layout = getattr(self.source, "layout", None)
        hourly = (layout and layout.hourly) or (self.source.kind == "sql" and self.source.windowed)
        if self.window.hours is not None and not hourly:
            raise ValueError(
                "window.hours needs hourly partitions (source.partitioning with HH) or a "
                "windowed SQL query"
            )
        allowed = metrics_for(self.model.task)
        unknown = [m for m in self.metrics if m not in allowed]
        if unknown:
            raise ValueError(
                f"metrics {unknown} are not {self.model.task} metrics; "
                f"choose from {sorted(allowed)}"
            )
        gate = self.gate
        for metric in (*gate.floors, *(gate.leak_ceilings or {}), gate.champion_metric):
            if metric not in self.metrics:
                raise ValueError(f"gate uses metric {metric!r}, which is not listed in 'metrics'")
        features = set(self.schema_.features)
        drift_columns = set(self.drift.columns or ())
        drift_columns |= set(self.drift.per_column_method) | set(self.drift.per_column_threshold)
        stray = sorted(drift_columns - features)
        if stray:
            raise ValueError(f"drift settings name columns that are not features: {stray}")
        self._check_drift_methods()
        self._check_performance()
        if self.scoring is not None:
            if getattr(self.source, "layout", None) is None:
                raise ValueError("scoring needs a partitioned source: static data has no new rows")
            if self.schema_.id_column is None:
                raise ValueError("scoring needs schema.id_column: each prediction is logged by id")
        return self

    def _check_performance(self) -> None:
        """The monitor joins labels to logged predictions by id and watches a listed metric."""
        if self.performance is None:
            return
        if self.labels is None:
            raise ValueError("performance needs a labels section: where the outcomes arrive")
        if self.schema_.id_column is None:
            raise ValueError("performance needs schema.id_column: labels are joined by id")
        if self.performance.metric not in self.metrics:
            raise ValueError(
                f"performance watches metric {self.performance.metric!r}, which is not listed "
                "in 'metrics'"
            )
        source = self.source
        if self.labels.prefix is None and getattr(source, "layout", None) is None:
            raise ValueError(
                "labels.prefix is required unless the source is partitioned files (labels "
                "land again in the source's own partitions)"
            )

    def _check_drift_methods(self) -> None:
        """Each drift method must accept the kind (numeric, categorical) of its columns."""
        schema = self.schema_
        kinds = {
            **dict.fromkeys(schema.numeric_features, "numeric"),
            **dict.fromkeys(schema.categorical_features, "categorical"),
        }
        methods = {column: self.drift.method for column in self.drift.columns or schema.features}
        methods.update(self.drift.per_column_method)
        for column, method in methods.items():
            if method is not None and kinds[column] not in DRIFT_METHODS[method]:
                raise ValueError(
                    f"drift method {method!r} cannot test {kinds[column]} column {column!r}; "
                    f"it accepts {sorted(DRIFT_METHODS[method])} columns"
                )

    @property
    def registered_model_name(self) -> str:
        """Name of the model in the MLflow registry."""
        return self.model.registered_name or self.name

    @property
    def leak_bounds(self) -> dict[str, float]:
        """Metric -> implausible value the gate rejects as a suspected leak."""
        if self.gate.leak_ceilings is not None:
            return dict(self.gate.leak_ceilings)
        return default_leak_bounds(self.metrics)

    @property
    def experiment_name(self) -> str:
        """MLflow experiment holding this pipeline's training runs."""
        return f"{self.name}-training"

    @property
    def monitoring_experiment(self) -> str:
        """MLflow experiment holding this pipeline's monitoring runs (drift, performance)."""
        return f"{self.name}-monitoring"

    @property
    def training_dag_id(self) -> str:
        """Airflow DAG id of the training DAG generated for this spec."""
        return f"train_{self.name}"

    @property
    def drift_dag_id(self) -> str:
        """Airflow DAG id of the drift-monitor DAG generated for this spec."""
        return f"drift_{self.name}"

    @property
    def rollback_dag_id(self) -> str:
        """Airflow DAG id of the manual rollback DAG generated for this spec."""
        return f"rollback_{self.name}"

    @property
    def scoring_dag_id(self) -> str:
        """Airflow DAG id of the batch-scoring DAG generated for this spec."""
        return f"score_{self.name}"

    @property
    def performance_dag_id(self) -> str:
        """Airflow DAG id of the performance monitor generated for this spec."""
        return f"performance_{self.name}"

    def sha256(self) -> str:
        """Content hash of the validated spec (key order and formatting do not matter)."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"invalid pipeline spec {path}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<top level>"
        lines.append(f"  field '{field}': {item['msg']}")
    return "\n".join(lines)


def parse_spec(data: object, path: Path) -> PipelineSpec:
    """Validate already-loaded YAML data into a spec.

    Args:
        data: The parsed YAML document.
        path: Where it came from, for error messages.

    Returns:
        The frozen spec.

    Raises:
        SpecError: Naming the file and every invalid field.
    """
    if not isinstance(data, dict):
        raise SpecError(f"invalid pipeline spec {path}: expected a mapping at the top level")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_errors(path, error)) from None
    if spec.name != path.stem:
        raise SpecError(
            f"invalid pipeline spec {path}: field 'name': {spec.name!r} must match the file name "
            f"{path.stem!r}"
        )
    return spec


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate one pipeline spec file.

    Args:
        path: A ``<name>.yaml`` file.

    Returns:
        The frozen spec.

    Raises:
        SpecError: The file is unreadable, not YAML, or invalid; the message names file and field.
    """
    try:
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 (safe loader)
    except OSError as error:
        raise SpecError(f"cannot read pipeline spec {path}: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"pipeline spec {path} is not valid YAML: {error}") from None
    return parse_spec(data, path)


def load_all_specs(directory: Path) -> list[PipelineSpec]:
    """Load every ``*.yaml`` spec in a directory, sorted by name.

    Args:
        directory: The pipelines directory.

    Returns:
        All specs.

    Raises:
        SpecError: Listing every invalid file, so one bad spec does not hide another, and every
            registered model name claimed by more than one spec (one would replace the other's
            champion).
    """
    if not directory.is_dir():
        raise SpecError(f"pipelines directory {directory} does not exist")
    specs, problems = [], []
    owners: dict[str, list[Path]] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            spec = load_spec(path)
        except SpecError as error:
            problems.append(str(error))
            continue
        specs.append(spec)
        owners.setdefault(spec.registered_model_name, []).append(path)
    for name, paths in owners.items():
        if len(paths) > 1:
            problems.append(
                f"invalid pipeline specs {' and '.join(str(p) for p in paths)}: field "
                f"'model.registered_name': both register model {name!r}; each pipeline needs "
                "its own (one would replace the other's champion)"
            )
    if problems:
        raise SpecError("\n".join(problems))
    return specs
