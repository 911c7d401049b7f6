"""Model construction and the seeded holdout split (scikit-learn, pandas); pure functions."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainyard.core.errors import DeterministicError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from trainyard.core.spec import PipelineSpec


class EstimatorImportError(DeterministicError):
    """The spec's estimator import path does not resolve to a scikit-learn estimator."""


class TrainingDataError(DeterministicError):
    """The snapshot cannot be trained on (columns missing, too few labelled rows)."""


def resolve_estimator(import_path: str) -> type:
    """Import an estimator class from ``package.module.ClassName``.

    Raises:
        EstimatorImportError: The module or class is missing, or it has no ``fit``.
    """
    module_name, _, class_name = import_path.rpartition(".")
    try:
        estimator = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise EstimatorImportError(
            f"model.estimator {import_path!r} cannot be imported: {error}"
        ) from error
    if not hasattr(estimator, "fit"):
        raise EstimatorImportError(f"model.estimator {import_path!r} has no fit method")
    return estimator


def build_pipeline(spec: PipelineSpec) -> Pipeline:
    """Preprocessing (impute + scale numeric, one-hot categorical) followed by the estimator.

    Args:
        spec: Declares the features, the estimator and its hyperparameters.

    Returns:
        An unfitted sklearn Pipeline taking the raw feature columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    schema = spec.schema_
    transformers = []
    if schema.numeric_features:
        numeric = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        transformers.append(("numeric", numeric, list(schema.numeric_features)))
    if schema.categorical_features:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, list(schema.categorical_features)))
    estimator = resolve_estimator(spec.model.estimator)(**spec.model.params)
    return Pipeline([("features", ColumnTransformer(transformers)), ("model", estimator)])


@dataclass(frozen=True)
class Split:
    """Train and holdout features and targets."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    dropped_unlabeled: int
    #: Training rows before ``model.max_training_rows`` sampled them (None: not sampled).
    train_rows_available: int | None = None

    def sample_note(self, seed: int) -> str | None:
        """What was sampled, for params and lineage (None when nothing was)."""
        if self.train_rows_available is None:
            return None
        return (
            f"{len(self.x_train)} of {self.train_rows_available} training rows "
            f"(model.max_training_rows, seed {seed})"
        )


def missing_columns(spec: PipelineSpec, columns: list[str]) -> list[str]:
    """The spec's feature and target columns that a snapshot with ``columns`` lacks."""
    schema = spec.schema_
    return [c for c in (*schema.features, schema.target) if c not in columns]


def prepare_frame(spec: PipelineSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep labelled rows (if the spec says so), numeric features as float.

    Works on any subset of the columns (and on any piece of the rows): only the numeric
    features present are cast.

    Returns:
        The rows to learn from and how many unlabelled rows were dropped.
    """
    schema = spec.schema_
    dropped = 0
    if spec.model.drop_unlabeled:
        labelled = frame[schema.target].notna()
        dropped = int((~labelled).sum())
        frame = frame.loc[labelled]
    # Numeric features as float: the model imputes missing values, and an integer column in the
    # MLflow signature would reject a scoring batch that has one.
    numeric = [c for c in schema.numeric_features if c in frame.columns]
    frame = frame.assign(**{c: frame[c].astype("float64") for c in numeric})
    return frame, dropped


def target_problem(spec: PipelineSpec, values: pd.Series) -> str | None:
    """Why a target column does not fit the spec's task, or None when it does.

    A regression target must hold numbers; a classification target must hold classes (text,
    booleans or whole numbers), not continuous values. Missing values (unlabelled rows) are
    ignored here.

    Args:
        spec: The task and the target's name.
        values: The target column.

    Returns:
        A one-line reason naming the target, the task and an offending value, or None.
    """
    import pandas as pd

    target, task = spec.schema_.target, spec.model.task
    labelled = values.dropna()
    if labelled.empty:
        return None
    if task == "regression":
        if pd.api.types.is_bool_dtype(labelled.dtype):
            return f"target {target!r} holds booleans, but model.task is regression"
        parsed = pd.to_numeric(labelled, errors="coerce")
        bad = labelled[parsed.isna()]
        if not bad.empty:
            return (
                f"target {target!r} holds non-numeric values (e.g. {bad.iloc[0]!r}), but "
                "model.task is regression"
            )
        return None
    if pd.api.types.is_float_dtype(labelled.dtype):
        fractional = labelled[labelled != labelled.round()]
        if not fractional.empty:
            return (
                f"target {target!r} holds continuous values (e.g. {float(fractional.iloc[0])!r}), "
                "but model.task is classification: use task: regression, or a class column"
            )
    return None


def check_target(spec: PipelineSpec, values: pd.Series) -> None:
    """Refuse a target that does not fit the task, before any model is fitted.

    Raises:
        TrainingDataError: The target does not fit the task (see :func:`target_problem`), or a
            classification target holds fewer than two classes.
    """
    problem = target_problem(spec, values)
    if problem:
        raise TrainingDataError(problem)
    if spec.model.task == "classification":
        classes = values.dropna().unique()
        if len(classes) < 2:
            raise TrainingDataError(
                f"target {spec.schema_.target!r} holds a single class {classes.tolist()} in "
                f"{len(values)} labelled rows; a classifier needs at least two"
            )


def holdout_mask(spec: PipelineSpec, frame: pd.DataFrame) -> np.ndarray:
    """Which rows are holdout: a seeded hash of each row's identity, not a random draw.

    A row is on the same side in every run with the same split settings, so a champion trained
    on an overlapping window has never seen any row of today's holdout, and comparing it with the
    challenger there is fair. The identity is the spec's ``id_column`` when it has one, otherwise
    the row's feature and target values.

    Args:
        spec: Split settings and schema.
        frame: Rows as returned by :func:`prepare_frame`.

    Returns:
        A boolean array, True for holdout rows.
    """
    import pandas as pd

    schema = spec.schema_
    if schema.id_column and schema.id_column in frame.columns:
        identity = frame[schema.id_column]
    else:
        identity = frame[[*schema.features, schema.target]]
    hashes = pd.util.hash_pandas_object(
        identity, index=False, hash_key=f"{spec.split.seed:016d}"[-16:]
    ).to_numpy()
    buckets = 1_000_000
    return hashes % buckets < round(spec.split.test_size * buckets)


#: Reads given columns of a snapshot's rows, in pieces indexed by row position (a new
#: iteration each call): :meth:`trainyard.data.snapshots.SnapshotFile.batches`, or one frame.
RowReader = Callable[[list[str]], Iterable["pd.DataFrame"]]


def split(spec: PipelineSpec, frame: pd.DataFrame) -> Split:
    """:func:`split_rows` of rows in memory.

    Raises:
        TrainingDataError: See :func:`split_rows`.
    """
    return split_rows(spec, list(frame.columns), lambda columns: [frame[columns]])


def _target_values(spec: PipelineSpec, y: pd.Series) -> pd.Series:
    import pandas as pd

    if spec.model.task == "classification":
        return y.astype("int64") if str(y.dtype) in {"Int64", "Int32", "boolean"} else y
    return pd.to_numeric(y).astype("float64")


def _training_sample(spec: PipelineSpec, available: int) -> np.ndarray | None:
    """Which training rows (by their order among training rows) ``max_training_rows`` keeps."""
    import numpy as np

    limit = spec.model.max_training_rows
    if limit is None or available <= limit:
        return None
    # Seeded and positional: the same snapshot gives the same sample, in snapshot order.
    return np.sort(np.random.default_rng(spec.split.seed).choice(available, limit, False))


def split_rows(
    spec: PipelineSpec, columns: list[str], read: RowReader, holdout_only: bool = False
) -> Split:
    """The holdout split by :func:`holdout_mask`; the same rows always land on the same side.

    Rows are read piece by piece and only the rows kept are held, so a snapshot larger than
    memory can be split: a first pass reads the target (and, to count the training rows for
    ``max_training_rows``, the row identity), a second reads the features. Pieces give the same
    split as the whole frame, since each row's side depends on that row alone.

    With ``model.max_training_rows``, a larger training side is cut to that many rows by a
    draw seeded with ``split.seed``; the holdout keeps every row.

    Args:
        spec: Features, target, split settings, ``max_training_rows``.
        columns: The snapshot's column names.
        read: Reads given columns in pieces indexed by row position.
        holdout_only: Keep only the holdout (``x_train``/``y_train`` come back empty).

    Returns:
        The split, indexed by row position in the snapshot.

    Raises:
        TrainingDataError: Declared columns are missing, no labelled rows are left, the target
            does not fit the task, either side is empty, or a classification holdout has one
            class.
    """
    import pandas as pd

    schema = spec.schema_
    missing = missing_columns(spec, columns)
    if missing:
        raise TrainingDataError(f"snapshot lacks columns declared in the spec: {missing}")
    identity = [schema.id_column] if schema.id_column in columns else []
    count_training = not holdout_only and spec.model.max_training_rows is not None
    first_pass = [*identity, schema.target] if count_training else [schema.target]
    if count_training and not identity:
        first_pass = [*schema.features, schema.target]
    labels, available, dropped = [], 0, 0
    for piece in read(first_pass):
        prepared, piece_dropped = prepare_frame(spec, piece)
        dropped += piece_dropped
        labels.append(prepared[schema.target])
        if count_training:
            available += int((~holdout_mask(spec, prepared)).sum())
    y_all = pd.concat(labels) if labels else pd.Series(dtype="float64")
    if y_all.empty:
        raise TrainingDataError("no labelled rows to train on")
    check_target(spec, y_all)
    chosen = _training_sample(spec, available) if count_training else None

    kept: dict[str, list[pd.DataFrame | pd.Series]] = {"xh": [], "yh": [], "xt": [], "yt": []}
    seen_training = 0
    for piece in read([*identity, *schema.features, schema.target]):
        prepared, _ = prepare_frame(spec, piece)
        holdout = holdout_mask(spec, prepared)
        x = prepared[list(schema.features)]
        y = _target_values(spec, prepared[schema.target])
        kept["xh"].append(x[holdout])
        kept["yh"].append(y[holdout])
        if holdout_only:
            continue
        x_train, y_train = x[~holdout], y[~holdout]
        if chosen is not None:
            first = seen_training
            seen_training += len(x_train)
            mine = chosen[(chosen >= first) & (chosen < seen_training)] - first
            x_train, y_train = x_train.iloc[mine], y_train.iloc[mine]
        kept["xt"].append(x_train)
        kept["yt"].append(y_train)
    x_test, y_test = pd.concat(kept["xh"]), pd.concat(kept["yh"])
    rows_training = len(y_all) - len(y_test)
    if not len(y_test) or not rows_training:
        raise TrainingDataError(
            f"{len(y_all)} labelled rows are too few for a {spec.split.test_size:.0%} holdout"
        )
    if spec.model.task == "classification" and y_test.nunique() < 2:
        raise TrainingDataError(
            "the holdout holds a single class; the window is too small to evaluate"
        )
    if holdout_only:
        x_train, y_train = x_test.iloc[:0], y_test.iloc[:0]
    else:
        x_train, y_train = pd.concat(kept["xt"]), pd.concat(kept["yt"])
    return Split(x_train, x_test, y_train, y_test, dropped, None if chosen is None else available)
