"""The one metric table: each metric's task, direction and how to compute it.

The spec validates its ``metrics`` and gate against this table; the evaluation computes from it.
Importing this module is cheap: scikit-learn is imported only when a metric is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Scored:
    """What a metric is computed from: true values, predictions and (classifiers) probabilities."""

    y_true: Any
    y_pred: Any
    probabilities: np.ndarray | None
    classes: Any


@dataclass(frozen=True)
class Metric:
    """One row of the table.

    ``implausible`` is the default leak bound of the gate: a challenger scoring at or beyond it
    (at or above for greater-is-better metrics, at or below otherwise) is rejected as a
    suspected leak of the label into a feature. None: no default (precision or recall can be
    perfect legitimately).
    """

    name: str
    task: Task
    greater_is_better: bool
    needs_probabilities: bool
    compute: Callable[[Scored], float]
    implausible: float | None = None


def _average(scored: Scored) -> str:
    import numpy as np

    return "binary" if len(np.unique(scored.y_true)) <= 2 else "macro"


def _accuracy(s: Scored) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(s.y_true, s.y_pred)


def _balanced_accuracy(s: Scored) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return balanced_accuracy_score(s.y_true, s.y_pred)


def _f1(s: Scored) -> float:
    from sklearn.metrics import f1_score

    return f1_score(s.y_true, s.y_pred, average=_average(s), zero_division=0)


def _precision(s: Scored) -> float:
    from sklearn.metrics import precision_score

    return precision_score(s.y_true, s.y_pred, average=_average(s), zero_division=0)


def _recall(s: Scored) -> float:
    from sklearn.metrics import recall_score

    return recall_score(s.y_true, s.y_pred, average=_average(s), zero_division=0)


def _roc_auc(s: Scored) -> float:
    from sklearn.metrics import roc_auc_score

    if _average(s) == "binary":
        return roc_auc_score(s.y_true, s.probabilities[:, 1])
    return roc_auc_score(s.y_true, s.probabilities, multi_class="ovr", labels=s.classes)


def _log_loss(s: Scored) -> float:
    from sklearn.metrics import log_loss

    return log_loss(s.y_true, s.probabilities, labels=s.classes)


def _r2(s: Scored) -> float:
    from sklearn.metrics import r2_score

    return r2_score(s.y_true, s.y_pred)


def _rmse(s: Scored) -> float:
    import numpy as np
    from sklearn.metrics import mean_squared_error

    return float(np.sqrt(mean_squared_error(s.y_true, s.y_pred)))


def _mae(s: Scored) -> float:
    from sklearn.metrics import mean_absolute_error

    return mean_absolute_error(s.y_true, s.y_pred)


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("roc_auc", "classification", True, True, _roc_auc, 0.999),
        Metric("accuracy", "classification", True, False, _accuracy, 0.999),
        Metric("balanced_accuracy", "classification", True, False, _balanced_accuracy, 0.999),
        Metric("f1", "classification", True, False, _f1, 0.999),
        Metric("precision", "classification", True, False, _precision),
        Metric("recall", "classification", True, False, _recall),
        Metric("log_loss", "classification", False, True, _log_loss, 0.001),
        Metric("r2", "regression", True, False, _r2, 0.999),
        # Errors are in the target's unit, so only an exact zero is implausible by default.
        Metric("rmse", "regression", False, False, _rmse, 0.0),
        Metric("mae", "regression", False, False, _mae, 0.0),
    )
}


def metrics_for(task: Task) -> list[str]:
    """Names of the metrics that apply to a task, in table order."""
    return [name for name, metric in METRICS.items() if metric.task == task]


def greater_is_better(name: str) -> bool:
    """Whether a higher value of the metric is better."""
    return METRICS[name].greater_is_better


def default_leak_bounds(names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The table's implausible values of the named metrics (those that have one)."""
    return {
        name: METRICS[name].implausible for name in names if METRICS[name].implausible is not None
    }


def compute_metrics(names: tuple[str, ...] | list[str], model: Any, x: Any, y: Any) -> dict:
    """Score a fitted model on features ``x`` with true targets ``y``.

    Args:
        names: Metrics from :data:`METRICS`.
        model: Anything with ``predict`` (and ``predict_proba`` / ``classes_`` for the
            probability metrics).
        x: Features.
        y: True targets.

    Returns:
        Metric name -> value. With probability metrics, classifiers' predicted classes are
        the most probable ones (``predict_proba`` runs once, ``predict`` not at all).
    """
    import numpy as np

    wanted = [METRICS[name] for name in names]
    probabilities = None
    if any(metric.needs_probabilities for metric in wanted):
        probabilities = model.predict_proba(x)
    classes = getattr(model, "classes_", None)
    if probabilities is not None and classes is not None:
        # The most probable class is what predict returns for scikit-learn classifiers (and
        # what scoring writes): one pass of the model over x instead of two.
        predicted = np.asarray(classes).take(probabilities.argmax(axis=1))
    else:
        predicted = model.predict(x)
    scored = Scored(y_true=y, y_pred=predicted, probabilities=probabilities, classes=classes)
    return {metric.name: float(metric.compute(scored)) for metric in wanted}
