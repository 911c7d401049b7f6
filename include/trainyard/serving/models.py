"""The served models: each pipeline's ``champion``, followed as the alias moves.

One background thread owns every load. It re-reads the ``champion`` alias of each served
pipeline every ``poll_seconds`` and at once when nudged (an MLflow webhook, see
:mod:`trainyard.serving.webhooks`). A new version is downloaded, loaded and warmed (it predicts
its own input example) while the old one keeps answering; only then is the pipeline's entry
replaced, with one assignment, so a request sees either the old model or the new one, never a
half-loaded one. A version that fails to load is logged and counted, the old one stays, and the
next poll tries again.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trainyard.core.tracking import CHAMPION
from trainyard.serving.compiled import (
    CompiledTransform,
    NotCompiled,
    compile_transform,
    has_one_pass,
    predict_with_probabilities,
)
from trainyard.serving.schema import Column, columns_from_signature, parse_request

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A loaded, warmed champion version of one pipeline."""

    pipeline: str
    registered_name: str
    version: str
    fingerprint: str | None
    loaded_at: datetime
    model: Any
    columns: tuple[Column, ...]
    classes: tuple[Any, ...] | None
    id_column: str | None
    #: The transform steps of a scikit-learn Pipeline (``model[:-1]``), or None for a bare
    #: estimator: run once per request, then the final estimator predicts and gives
    #: probabilities from the same features (a Pipeline's own ``predict`` and
    #: ``predict_proba`` would each transform again; that was most of a one-row request).
    preprocessor: Any | None = None
    #: ``preprocessor`` as NumPy arithmetic (:mod:`trainyard.serving.compiled`), set only once
    #: it gave the same features on probe rows; None: scikit-learn transforms.
    compiled: CompiledTransform | None = None
    #: Predictions and probabilities come from one pass over the estimator's trees
    #: (:func:`trainyard.serving.compiled.predict_with_probabilities`), checked like ``compiled``.
    one_pass: bool = False

    @property
    def parallel_rows(self) -> bool:
        """Whether parts of a request predicted in threads at once run in parallel: the
        compiled transform and the one-pass trees give each row the answer it gets in the whole
        request, and spend most of their time in NumPy and Cython without the GIL."""
        return self.one_pass and (self.compiled is not None or self.preprocessor is None)

    @property
    def estimator(self) -> Any:
        """What predicts from the transformed features (the whole model when bare)."""
        return self.model if self.preprocessor is None else self.model[-1]

    def features(self, data: dict[str, Any]) -> Any:
        """The estimator's input for checked request columns (see :class:`ParsedRequest`)."""
        if self.compiled is not None:
            return self.compiled(data)
        frame = features_frame(self, data)
        return frame if self.preprocessor is None else self.preprocessor.transform(frame)

    def estimate(self, features: Any) -> tuple[Any, Any | None]:
        """Predictions and class probabilities (None for a regressor) of :meth:`features`."""
        estimator = self.estimator
        if self.classes is None:
            return estimator.predict(features), None
        if self.one_pass:
            return predict_with_probabilities(estimator, features)
        return estimator.predict(features), estimator.predict_proba(features)

    def predict(self, data: dict[str, Any]) -> tuple[Any, Any | None]:
        """Predictions and class probabilities (None for a regressor) of request columns."""
        return self.estimate(self.features(data))

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` shows for it."""
        return {
            "name": self.pipeline,
            "registered_model": self.registered_name,
            "version": self.version,
            "alias": CHAMPION,
            "fingerprint": self.fingerprint,
            "loaded_at": self.loaded_at.isoformat(),
            "compiled": self.compiled is not None,
        }


def transform_steps(model: Any) -> Any | None:
    """The transform half of a scikit-learn Pipeline (None for anything else).

    ``Pipeline.predict_proba`` is ``model[-1].predict_proba(model[:-1].transform(X))``, and
    ``predict`` likewise, so splitting the pipeline gives the same answers with one transform.
    """
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and len(model.steps) > 1:
        return model[:-1]
    return None


def features_frame(model: ServedModel, data: dict[str, Any]) -> Any:
    """Checked request columns as the frame the model was trained on: numbers as float.

    Number columns are float64 arrays already (``None`` is NaN: the pipelines impute it);
    integers, booleans and anything else are lists whose dtype pandas infers, as from records.
    """
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            column.name: np.array(data[column.name], dtype=object)
            if column.kind == "string"
            else data[column.name]
            for column in model.columns
        },
        copy=False,
    )


def with_shortcuts(served: ServedModel, probes: list[dict[str, Any]]) -> ServedModel:
    """``served`` with the compiled transform and the one-pass prediction that apply to it.

    Each is kept only if it gives scikit-learn's own answers, bit for bit, on every probe
    (``probes``: request columns, e.g. the input example) and on rows reaching each fitted
    value (:meth:`CompiledTransform.probe`); otherwise scikit-learn does that part, and the
    log says why.

    Args:
        served: A loaded model (transformed and predicted by scikit-learn).
        probes: Checked request columns to compare on.

    Returns:
        The model to serve.
    """
    import numpy as np

    def same(ours: Any, theirs: Any) -> bool:
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        return (
            ours.dtype == theirs.dtype
            and ours.shape == theirs.shape
            and np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
        )

    name = f"{served.registered_name} v{served.version}"
    compiled = None
    if served.preprocessor is not None:
        try:
            compiled = compile_transform(served.preprocessor, served.columns)
        except NotCompiled as reason:
            log.info("%s: transformed by scikit-learn (%s)", name, reason)
        else:
            probes = [*probes, compiled.probe(served.columns)]
            for data in probes:
                expected = served.features(data)
                if not isinstance(expected, np.ndarray) or not same(compiled(data), expected):
                    log.warning("%s: the compiled transform differs; scikit-learn transforms", name)
                    compiled = None
                    break
    one_pass = served.classes is not None and has_one_pass(served.estimator)
    if one_pass:
        for data in probes:
            features = served.features(data)
            ours = predict_with_probabilities(served.estimator, features)
            theirs = served.estimate(features)
            if not (same(ours[0], theirs[0]) and same(ours[1], theirs[1])):
                log.warning("%s: one-pass predictions differ; predicting twice", name)
                one_pass = False
                break
    return dataclasses.replace(served, compiled=compiled, one_pass=one_pass)


def load_version(spec: PipelineSpec, version: Any) -> ServedModel:
    """Download, load and warm one registered version (blocking; the old one serves meanwhile).

    Args:
        spec: The pipeline (its id column; the model name is ``spec.registered_model_name``).
        version: The MLflow ``ModelVersion`` to load.

    Returns:
        The model, ready to answer.

    Raises:
        ValueError: The version has no signature with named columns, so requests cannot be
            checked against it.
    """
    import mlflow
    from mlflow.models import Model

    name = spec.registered_model_name
    with tempfile.TemporaryDirectory(prefix="trainyard-serving-") as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version.version}", dst_path=tmp
        )
        metadata = Model.load(path)
        if metadata.signature is None:
            raise ValueError(f"{name} v{version.version} has no signature; it cannot be served")
        sklearn_model = mlflow.sklearn.load_model(path)
        example = metadata.load_input_example(path)
    classes = getattr(sklearn_model, "classes_", None)
    columns = columns_from_signature(metadata.signature.inputs)
    served = ServedModel(
        pipeline=spec.name,
        registered_name=name,
        version=str(version.version),
        fingerprint=(version.tags or {}).get("fingerprint"),
        loaded_at=datetime.now(UTC),
        model=sklearn_model,
        columns=columns,
        classes=tuple(classes.tolist())
        if classes is not None and hasattr(sklearn_model, "predict_proba")
        else None,
        id_column=spec.schema_.id_column,
        preprocessor=transform_steps(sklearn_model),
    )
    # The input example, checked as a request would be; predicting it also warms the model
    # (the first predict of a freshly loaded pipeline pays one-off costs).
    probes = []
    if example is not None:
        body = example.to_json(orient="split", index=False).encode()
        probes.append(parse_request(b'{"dataframe_split": %s}' % body, columns).columns)
    served = with_shortcuts(served, probes)
    for data in probes:
        served.predict(data)
    return served


def _freeze_long_lived() -> None:
    """Keep the cyclic garbage collector off everything alive now (a model just loaded, the
    imported libraries): they live as long as the server.

    A full collection walks every tracked object; with MLflow, scikit-learn and pandas loaded
    that is ~230,000 objects, 140-180 ms holding the GIL here, and it came at random under load
    (one 1,000-row request took 193 ms instead of ~17 ms). Frozen objects are skipped by later
    collections; they are still freed by reference counting (a replaced model is: a fitted
    scikit-learn pipeline holds no reference cycle). Before the first freeze, one full
    collection, so that the start's garbage is not kept for ever.
    """
    if not gc.get_freeze_count():
        gc.collect()
    gc.freeze()


class ChampionFollower:
    """Keeps each served pipeline's champion loaded, following the alias.

    Args:
        specs: The pipelines to serve.
        poll_seconds: How often every alias is re-read.
        on_change: Called after each swap with the new model (metrics).
        on_failure: Called with the pipeline name when a lookup or load fails (metrics).
    """

    def __init__(
        self,
        specs: list[PipelineSpec],
        poll_seconds: float,
        on_change: Callable[[ServedModel], None] = lambda model: None,
        on_failure: Callable[[str], None] = lambda pipeline: None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.poll_seconds = poll_seconds
        self._on_change = on_change
        self._on_failure = on_failure
        self._served: dict[str, ServedModel] = {}
        #: Pipelines whose last lookup found no champion in the registry (nothing to serve yet).
        self._without_champion: set[str] = set()
        self._nudges: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def get(self, pipeline: str) -> ServedModel | None:
        """The model serving a pipeline now (None before its first champion is loaded)."""
        return self._served.get(pipeline)

    def served(self) -> list[ServedModel]:
        """Every loaded model, by pipeline name."""
        return [self._served[name] for name in sorted(self._served)]

    def without_champion(self) -> list[str]:
        """Pipelines that have no champion in the registry (and none loaded)."""
        return sorted(self._without_champion - set(self._served))

    def missing(self) -> list[str]:
        """Pipelines whose champion is not loaded yet: not looked up yet, or its load failed.

        A pipeline without any champion in the registry is not missing: there is nothing to
        serve, and a server that waited for it would never be ready.
        """
        return sorted(set(self.specs) - set(self._served) - self._without_champion)

    def refresh(self, pipeline: str) -> bool:
        """Re-read a pipeline's alias and swap in its champion if it changed (blocking).

        Returns:
            Whether a new version is now served.
        """
        from trainyard.core.tracking import champion_version

        spec = self.specs[pipeline]
        try:
            version = champion_version(spec.registered_model_name)
            current = self._served.get(pipeline)
            if version is None:
                self._without_champion.add(pipeline)
                if current is not None:
                    log.warning(
                        "%s has no champion any more; still serving v%s",
                        spec.registered_model_name,
                        current.version,
                    )
                return False
            self._without_champion.discard(pipeline)
            if current is not None and current.version == str(version.version):
                return False
            model = load_version(spec, version)
        except Exception as error:  # noqa: BLE001 (keep serving the old version; retry later)
            from trainyard.core.services import is_transient

            if is_transient(error):  # MLflow down: one line per poll, not a traceback
                log.warning("could not follow the champion of %s: %s", pipeline, error)
            else:
                log.exception("could not follow the champion of %s", pipeline)
            self._on_failure(pipeline)
            return False
        _freeze_long_lived()
        # Copy, then replace the whole mapping: readers never see it half-updated.
        self._served = {**self._served, pipeline: model}
        log.info(
            "%s: now serving %s v%s (was %s)",
            pipeline,
            model.registered_name,
            model.version,
            f"v{current.version}" if current else "nothing",
        )
        self._on_change(model)
        return True

    def nudge(self, registered_name: str) -> bool:
        """Ask for an immediate re-read of the pipeline serving a registered model.

        Returns:
            Whether the model is one this server follows.
        """
        for spec in self.specs.values():
            if spec.registered_model_name == registered_name:
                self._nudges.put(spec.name)
                return True
        return False

    def start(self) -> None:
        """Load every champion, then keep following, in a background thread."""
        self._thread = threading.Thread(target=self._run, name="champion-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the loaded models stay)."""
        self._stopping.set()
        self._nudges.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        next_poll = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() >= next_poll:
                for name in self.specs:
                    self.refresh(name)
                next_poll = time.monotonic() + self.poll_seconds
            try:
                nudged = self._nudges.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                continue
            if nudged is not None:
                self.refresh(nudged)
