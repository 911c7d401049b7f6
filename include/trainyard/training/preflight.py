"""Preflight: prove a spec's model can be built, fitted and saved before any data is read.

``trainyard specs``, the DAG integrity tests and the start of every ``train`` step fit the spec's
scikit-learn pipeline on a tiny synthetic frame built from its schema, and save it with the
serializer MLflow uses (skops, with the spec's trusted types). So a misspelt hyperparameter, an
invalid hyperparameter value, a regressor under ``task: classification`` or a model holding a
type nobody reviewed is reported in seconds, naming the spec file and field, instead of after
the data was read and an MLflow run was started.

scikit-learn and skops are imported inside the functions: this module is cheap to import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.core.spec import SpecError

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec

#: Types skops does not trust by default that every trainyard model may hold, reviewed once:
#: ``numpy.dtype`` (our OneHotEncoder's dtype) and scikit-learn's own fitted tree structures
#: (decision trees, random forests, extra trees, gradient boosting, AdaBoost and bagging of
#: trees: ``Tree``; histogram gradient boosting: ``TreePredictor``). They hold arrays of split
#: thresholds and node values only. Anything else (k-NN's KDTree, MLP optimisers, your own
#: classes) must be listed under ``model.skops_trusted_types`` after review.
SKLEARN_TRUSTED_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)

#: Rows of the synthetic frame: enough for every estimator's minimum (k-NN's default of 5
#: neighbours, 5-fold internal validation), small enough to fit in well under a second.
_SYNTHETIC_ROWS = 60

_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")
_PARAMETER_NAMED = re.compile(r"The '(\w+)' parameter")


class UntrustedModelTypesError(SpecError):
    """The fitted model holds types that neither skops, trainyard nor the spec trusts."""


def _refuse(path: Path, field: str, why: str) -> SpecError:
    return SpecError(f"invalid pipeline spec {path}: field {field!r}: {why}")


def synthetic_frame(spec: PipelineSpec, rows: int = _SYNTHETIC_ROWS) -> pd.DataFrame:
    """A tiny frame with the spec's columns: numbers, three categories, a fitting target.

    Every numeric and categorical column has a missing value, so the imputers are exercised.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    schema = spec.schema_
    columns: dict[str, Any] = {}
    for column in schema.numeric_features:
        values = rng.normal(size=rows)
        values[0] = np.nan
        columns[column] = values
    for column in schema.categorical_features:
        values = rng.choice(["a", "b", "c"], size=rows).astype(object)
        values[1] = None
        columns[column] = values
    if spec.model.task == "classification":
        columns[schema.target] = np.arange(rows) % 2
    else:
        columns[schema.target] = rng.normal(size=rows)
    return pd.DataFrame(columns)


def trusted_types(spec: PipelineSpec, model: Any, path: Path | None = None) -> list[str]:
    """The types to trust when MLflow saves the model with skops, checked by loading it back.

    Args:
        spec: Lists the extra types its author reviewed (``model.skops_trusted_types``).
        model: The fitted pipeline.
        path: The spec file, for the message (default: ``<name>.yaml``).

    Returns:
        The model's types that skops does not trust by default, all of them allowed.

    Raises:
        UntrustedModelTypesError: Naming the types the spec would have to list first.
    """
    import skops.io

    body = skops.io.dumps(model)
    found = sorted(skops.io.get_untrusted_types(data=body))
    unexpected = sorted(set(found) - SKLEARN_TRUSTED_TYPES - set(spec.model.skops_trusted_types))
    if unexpected:
        raise UntrustedModelTypesError(
            f"invalid pipeline spec {path or spec.name + '.yaml'}: field "
            f"'model.skops_trusted_types': the fitted {spec.model.estimator} contains types "
            f"skops does not trust by default: {unexpected}. If you reviewed and trust them, "
            "list them under model.skops_trusted_types"
        )
    skops.io.loads(body, trusted=found)
    return found


def _task_problem(spec: PipelineSpec, estimator: Any) -> str | None:
    from sklearn.base import is_classifier, is_regressor

    task = spec.model.task
    fits = is_classifier(estimator) if task == "classification" else is_regressor(estimator)
    if fits:
        return None
    kind = (
        "a classifier"
        if is_classifier(estimator)
        else "a regressor"
        if is_regressor(estimator)
        else "neither a classifier nor a regressor"
    )
    return f"{spec.model.estimator} is {kind}, but model.task is {task}"


def preflight(spec: PipelineSpec, path: Path | None = None) -> None:
    """Build, fit and save the spec's pipeline on a synthetic frame; refuse what cannot work.

    Args:
        spec: The pipeline.
        path: Its file, for messages (default: ``<name>.yaml``).

    Raises:
        trainyard.core.spec.SpecError: One line naming the spec file and the field: an estimator
            that does not import, does not fit the task, an unknown or invalid hyperparameter,
            a fit that fails, or a model type skops would refuse to load.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    from trainyard.training import modeling

    path = path or Path(f"{spec.name}.yaml")
    try:
        model = modeling.build_pipeline(spec)
    except modeling.EstimatorImportError as error:
        raise _refuse(path, "model.estimator", str(error)) from None
    except TypeError as error:
        match = _UNEXPECTED_KEYWORD.search(str(error))
        field = f"model.params.{match.group(1)}" if match else "model.params"
        raise _refuse(path, field, f"{spec.model.estimator} does not accept it: {error}") from None
    problem = _task_problem(spec, model.steps[-1][1])
    if problem:
        raise _refuse(path, "model.task", problem)
    frame = synthetic_frame(spec)
    schema = spec.schema_
    try:
        model.fit(frame[list(schema.features)], frame[schema.target])
    except InvalidParameterError as error:
        match = _PARAMETER_NAMED.search(str(error))
        field = f"model.params.{match.group(1)}" if match else "model.params"
        raise _refuse(path, field, str(error)) from None
    except (TypeError, ValueError) as error:
        raise _refuse(
            path,
            "model",
            f"fitting {spec.model.estimator} on a {_SYNTHETIC_ROWS}-row synthetic frame of "
            f"this schema failed: {error}",
        ) from None
    trusted_types(spec, model, path)


def check_pipelines(settings: Settings) -> list[tuple[PipelineSpec, Path]]:
    """Everything ``trainyard specs`` checks: every spec, its suite (with GX) and preflight.

    Args:
        settings: Where the specs and suites are.

    Returns:
        Each spec and its file, when all are valid.

    Raises:
        trainyard.core.spec.SpecError: A spec is invalid, two share a registered model, a spec
            fails preflight, or a suite is missing or has an invalid expectation; listing every
            problem of every spec, so one does not hide another.
    """
    from trainyard.core.errors import DeterministicError
    from trainyard.core.spec import load_all_specs
    from trainyard.data.validation import load_checked_suite

    checked, problems = [], []
    for spec in load_all_specs(settings.pipelines_dir):
        path = settings.pipelines_dir / f"{spec.name}.yaml"
        try:
            preflight(spec, path)
        except DeterministicError as error:
            problems.append(str(error))
        try:
            load_checked_suite(settings, spec.validation.suite)
        except DeterministicError as error:
            problems.append(str(error))
        checked.append((spec, path))
    if problems:
        raise SpecError("\n".join(problems))
    return checked
