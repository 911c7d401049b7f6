"""A served pipeline's fitted preprocessing as plain NumPy, when its shape is known (pure).

Why: for a one-row request, scikit-learn's ColumnTransformer spent ~2.2 ms of the ~3.7 ms of
model time (churn pipeline, measured at load 3) on input validation, pandas indexing and job
dispatch around a few microseconds of arithmetic. Once fitted, the preprocessing trainyard
trains (:func:`trainyard.training.modeling.build_pipeline`) is that arithmetic:

- number columns: a missing value becomes the imputer's statistic, then ``(x - mean) / scale``;
- string columns: one-hot over the encoder's categories; a value it never saw is all zeros.

:func:`compile_transform` reads those fitted values from a ColumnTransformer and raises
:class:`NotCompiled` naming the part it does not reproduce exactly (another kind of step, a
passthrough, sparse output, an imputer that adds indicators or drops a column, infrequent
categories, ...); the server then transforms through scikit-learn. A compiled transform is only
used once it gave scikit-learn's output bit for bit on probe rows: the version's input example
and :meth:`CompiledTransform.probe` (every category, unseen values, nulls), see
:func:`trainyard.serving.models.load_version`.

The same goes for the final estimator: a HistGradientBoostingClassifier's ``predict`` and
``predict_proba`` each sum every tree's leaves first (the other half of the model time);
:func:`predict_with_probabilities` does that once for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from trainyard.serving.schema import Column


class NotCompiled(Exception):
    """The preprocessing is not one :func:`compile_transform` reproduces (says which part)."""


@dataclass(frozen=True)
class _NumberBlock:
    """Number columns: imputed (``fill``), centred (``mean``), scaled (``scale``)."""

    columns: tuple[str, ...]
    fill: np.ndarray | None
    mean: np.ndarray | None
    scale: np.ndarray | None

    @property
    def width(self) -> int:
        return len(self.columns)

    def write(self, data: dict[str, Any], out: np.ndarray) -> None:
        import numpy as np

        for index, name in enumerate(self.columns):
            out[:, index] = np.asarray(data[name], dtype=np.float64)
        if self.fill is not None:
            missing = np.isnan(out)
            if missing.any():
                out[missing] = np.broadcast_to(self.fill, out.shape)[missing]
        # The operations of StandardScaler.transform, in its order, in float64.
        if self.mean is not None:
            out -= self.mean
        if self.scale is not None:
            out /= self.scale


@dataclass(frozen=True)
class _OneHotBlock:
    """String columns, one-hot over each column's categories (unseen: all zeros)."""

    columns: tuple[str, ...]
    categories: tuple[pd.Index, ...]

    @property
    def width(self) -> int:
        return sum(len(index) for index in self.categories)

    def write(self, data: dict[str, Any], out: np.ndarray) -> None:
        import numpy as np

        rows = np.arange(out.shape[0])
        offset = 0
        for name, index in zip(self.columns, self.categories, strict=True):
            codes = index.get_indexer(data[name])
            seen = codes >= 0
            out[rows[seen], offset + codes[seen]] = 1.0
            offset += len(index)


@dataclass(frozen=True)
class CompiledTransform:
    """A fitted ColumnTransformer's output from checked request columns, without scikit-learn."""

    blocks: tuple[_NumberBlock | _OneHotBlock, ...]

    def __call__(self, data: dict[str, Any]) -> np.ndarray:
        """The features of ``data`` (column name -> values), as the ColumnTransformer gives."""
        import numpy as np

        rows = len(data[self.blocks[0].columns[0]])
        out = np.zeros((rows, sum(block.width for block in self.blocks)))
        offset = 0
        for block in self.blocks:
            block.write(data, out[:, offset : offset + block.width])
            offset += block.width
        return out

    def probe(self, columns: tuple[Column, ...]) -> dict[str, Any]:
        """Rows that reach every fitted value: each category of each string column in turn, a
        value no encoder saw, nulls everywhere, and numbers of several signs and magnitudes.

        Args:
            columns: The model's input columns (every one gets values, used or not).

        Returns:
            Request columns as :func:`trainyard.serving.schema.parse_request` gives them.
        """
        import numpy as np

        categories = {
            name: list(index)
            for block in self.blocks
            if isinstance(block, _OneHotBlock)
            for name, index in zip(block.columns, block.categories, strict=True)
        }
        rows = max((len(values) for values in categories.values()), default=1) + 2
        numbers = [0.0, 1.5, -3.25, 1e6, 7.0, -0.001, 42.0]
        data: dict[str, Any] = {}
        for column in columns:
            if column.kind in ("number", "integer"):
                values = [float(numbers[row % len(numbers)]) for row in range(rows - 1)]
                if column.kind == "integer":
                    values = [int(value) for value in values]
                values.append(None)
                data[column.name] = (
                    np.array(values, dtype=np.float64) if column.kind == "number" else values
                )
            elif column.kind == "string":
                seen = categories.get(column.name) or ["a"]
                values = [seen[row % len(seen)] for row in range(rows - 2)]
                data[column.name] = [*values, "\x00 never seen", None]
            else:
                data[column.name] = [None] * rows
        return data


def compile_transform(preprocessor: Any, columns: tuple[Column, ...]) -> CompiledTransform:
    """The fitted values of a ColumnTransformer (alone or as a one-step Pipeline) as NumPy.

    Args:
        preprocessor: The transform steps of the served pipeline (``model[:-1]``).
        columns: The model's input columns: number/integer columns may feed imputers and
            scalers, string columns one-hot encoders.

    Returns:
        The compiled transform (check it against ``preprocessor`` before use).

    Raises:
        NotCompiled: A part it does not reproduce exactly; the message names it.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    step = preprocessor
    if isinstance(step, Pipeline):
        if len(step.steps) != 1:
            raise NotCompiled(f"{len(step.steps)} preprocessing steps, not one ColumnTransformer")
        step = step.steps[0][1]
    if type(step) is not ColumnTransformer:
        raise NotCompiled(f"the preprocessing is a {type(step).__name__}")
    if getattr(step, "sparse_output_", False):
        raise NotCompiled("the ColumnTransformer's output is sparse")
    kinds = {column.name: column.kind for column in columns}
    blocks: list[_NumberBlock | _OneHotBlock] = []
    for name, transformer, selected in step.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if isinstance(transformer, str):
            raise NotCompiled(f"transformer {name!r} is {transformer!r}")
        if (
            not isinstance(selected, list)
            or not selected
            or not all(isinstance(column, str) for column in selected)
        ):
            raise NotCompiled(f"transformer {name!r} does not select columns by name")
        steps = (
            # A step set to None or "passthrough" does nothing in a Pipeline.
            [each for _, each in transformer.steps if each is not None and each != "passthrough"]
            if isinstance(transformer, Pipeline)
            else [transformer]
        )
        selected_kinds = {kinds.get(column) for column in selected}
        if selected_kinds <= {"number", "integer"}:
            blocks.append(_number_block(name, tuple(selected), steps))
        elif selected_kinds == {"string"}:
            blocks.append(_one_hot_block(name, tuple(selected), steps))
        else:
            raise NotCompiled(f"transformer {name!r} takes columns of kinds {selected_kinds}")
    if not blocks:
        raise NotCompiled("the ColumnTransformer outputs no column")
    return CompiledTransform(tuple(blocks))


def _imputer(name: str, imputer: Any) -> np.ndarray:
    """A SimpleImputer's statistics, if it only replaces NaN, keeps every column, adds nothing."""
    import numpy as np
    import pandas as pd

    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
        raise NotCompiled(f"{name}: the imputer adds indicators or imputes other than NaN")
    statistics = np.asarray(imputer.statistics_)
    if pd.isna(statistics).any():  # scikit-learn drops such a column
        raise NotCompiled(f"{name}: the imputer has a column without a statistic")
    return statistics


def _number_block(name: str, columns: tuple[str, ...], steps: list[Any]) -> _NumberBlock:
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    fill = mean = scale = None
    rest = list(steps)
    if rest and type(rest[0]) is SimpleImputer:
        fill = _imputer(name, rest.pop(0)).astype(np.float64)
    if rest and type(rest[0]) is StandardScaler:
        scaler = rest.pop(0)
        mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
        scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
    if rest:
        raise NotCompiled(f"{name}: a {type(rest[0]).__name__} step on number columns")
    return _NumberBlock(columns, fill, mean, scale)


def _one_hot_block(name: str, columns: tuple[str, ...], steps: list[Any]) -> _OneHotBlock:
    import numpy as np
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    rest = list(steps)
    if rest and type(rest[0]) is SimpleImputer:
        # It replaces a float NaN only (not None); a checked string column holds text or
        # None, so it never changes one of ours (the probes include None).
        _imputer(name, rest.pop(0))
    if len(rest) != 1 or type(rest[0]) is not OneHotEncoder:
        kinds = [type(each).__name__ for each in rest]
        raise NotCompiled(f"{name}: string columns go through {kinds}, not one OneHotEncoder")
    encoder = rest[0]
    if (
        encoder.drop is not None
        or encoder.handle_unknown != "ignore"
        or encoder.min_frequency is not None
        or encoder.max_categories is not None
        or encoder.sparse_output
        or np.dtype(encoder.dtype) != np.float64
    ):
        raise NotCompiled(
            f"{name}: the OneHotEncoder drops, errs on unseen values, groups infrequent "
            "categories or is not dense float64"
        )
    if not all(isinstance(value, str) for values in encoder.categories_ for value in values):
        raise NotCompiled(f"{name}: the OneHotEncoder has categories that are not text")
    categories = tuple(pd.Index(list(values), dtype=object) for values in encoder.categories_)
    return _OneHotBlock(columns, categories)


def has_one_pass(estimator: Any) -> bool:
    """Whether :func:`predict_with_probabilities` applies to ``estimator``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return type(estimator) is HistGradientBoostingClassifier


def predict_with_probabilities(estimator: Any, features: Any) -> tuple[np.ndarray, np.ndarray]:
    """A HistGradientBoostingClassifier's ``predict`` and ``predict_proba`` from one pass.

    Both methods start by summing the trees' leaves (``_raw_predict``); this sums them once and
    ends each as scikit-learn 1.9 does: the class is ``raw > 0`` (two classes) or the highest
    raw score, the probabilities are the loss's inverse link of it.

    Args:
        estimator: A fitted HistGradientBoostingClassifier (:func:`has_one_pass`).
        features: What its ``predict`` would take.

    Returns:
        ``(predictions, probabilities)``, equal to its ``predict`` and ``predict_proba``.
    """
    import numpy as np

    raw = estimator._raw_predict(features)  # noqa: SLF001 (what predict and predict_proba call)
    # Two classes: one raw score per row, and scikit-learn's "> 0" (argmax would pick the
    # first class of a probability tie).
    encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
    probabilities = estimator._loss.predict_proba(raw)  # noqa: SLF001 (as predict_proba does)
    return estimator.classes_[encoded], probabilities
