"""Model construction and the seeded holdout split (scikit-learn, pandas); pure functions."""

from __future__ import annotations

import importlib
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


def prepare_frame(spec: PipelineSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep labelled rows (if the spec says so), check the declared columns, numeric as float.

    Returns:
        The rows to learn from and how many unlabelled rows were dropped.

    Raises:
        TrainingDataError: Declared columns are missing, or no labelled rows are left.
    """
    schema = spec.schema_
    missing = [c for c in (*schema.features, schema.target) if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"snapshot lacks columns declared in the spec: {missing}")
    dropped = 0
    if spec.model.drop_unlabeled:
        labelled = frame[schema.target].notna()
        dropped = int((~labelled).sum())
        frame = frame.loc[labelled]
    if frame.empty:
        raise TrainingDataError("no labelled rows to train on")
    # Numeric features as float: the model imputes missing values, and an integer column in the
    # MLflow signature would reject a scoring batch that has one.
    numeric = list(schema.numeric_features)
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


def split(spec: PipelineSpec, frame: pd.DataFrame) -> Split:
    """The holdout split by :func:`holdout_mask`; the same rows always land on the same side.

    With ``model.max_training_rows``, a larger training side is cut to that many rows by a
    draw seeded with ``split.seed``; the holdout keeps every row.

    Raises:
        TrainingDataError: The target does not fit the task, either side is empty, or a
            classification holdout has one class.
    """
    import numpy as np
    import pandas as pd

    frame, dropped = prepare_frame(spec, frame)
    schema = spec.schema_
    x = frame[list(schema.features)]
    y = frame[schema.target]
    check_target(spec, y)
    if spec.model.task == "classification":
        y = y.astype("int64") if str(y.dtype) in {"Int64", "Int32", "boolean"} else y
    else:
        y = pd.to_numeric(y).astype("float64")
    holdout = holdout_mask(spec, frame)
    if holdout.all() or not holdout.any():
        raise TrainingDataError(
            f"{len(frame)} labelled rows are too few for a {spec.split.test_size:.0%} holdout"
        )
    if spec.model.task == "classification" and y[holdout].nunique() < 2:
        raise TrainingDataError(
            "the holdout holds a single class; the window is too small to evaluate"
        )
    x_train, y_train = x[~holdout], y[~holdout]
    available = None
    limit = spec.model.max_training_rows
    if limit is not None and len(x_train) > limit:
        available = len(x_train)
        # Seeded and positional: the same snapshot gives the same sample, in snapshot order.
        chosen = np.sort(np.random.default_rng(spec.split.seed).choice(available, limit, False))
        x_train, y_train = x_train.iloc[chosen], y_train.iloc[chosen]
    return Split(x_train, x[holdout], y_train, y[holdout], dropped, available)
