"""A custom estimator for the bad-input corpus: it holds a type nobody listed as trusted."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Tally:
    """Plain state object: skops cannot know it is harmless, so it must be listed to be loaded."""

    def __init__(self, counts: dict) -> None:
        self.counts = counts


class TallyClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the majority class, remembering the class counts in a :class:`Tally`."""

    def fit(self, x, y):  # noqa: ANN001, ANN201 (sklearn's signature)
        self.classes_, counts = np.unique(y, return_counts=True)
        self.tally_ = Tally(dict(zip(self.classes_.tolist(), counts.tolist(), strict=True)))
        return self

    def predict_proba(self, x):  # noqa: ANN001, ANN201
        shares = np.array(list(self.tally_.counts.values()), dtype=float)
        return np.tile(shares / shares.sum(), (len(x), 1))

    def predict(self, x):  # noqa: ANN001, ANN201
        return self.classes_[self.predict_proba(x).argmax(axis=1)]
