"""Dynamic batching: requests waiting for the same model are predicted together.

Most of a one-row prediction is fixed cost (scikit-learn's input checks, the column
transformer's pandas work, one frame built): predicting 50 waiting rows at once costs about as
much as predicting one. So predictions run in at most ``workers`` threads; a request that finds a
thread free is predicted at once, alone (no added wait: at low rates nothing changes), and
requests that arrive while every thread is busy queue; when a thread frees up, it takes every
waiting request of the oldest one's model (up to ``max_rows`` rows, and at least one request)
and predicts them in one call. Each request gets back exactly its own rows' answers.

Every request is still checked on its own before it queues (signature, 422), and logged on its
own after. If a joined prediction fails, each of its requests is predicted again alone, so one
request's failure is never reported to another.

All bookkeeping happens on the event loop (no locks); only the predictions run in threads.

Each prediction thread limits the native thread pools it uses (OpenMP, BLAS) to
``native_threads``: the server's parallelism is its prediction threads. Left to OpenMP, one
``HistGradientBoostingClassifier.predict_proba`` of one row started a parallel region over
both cores; on the shared 2-core host (load 11-18) that took 104-119 ms at the median and
3.3-5.4 s at p99, against 10-12 ms and 28-37 ms with one OpenMP thread, same process, same row
(spinning OpenMP workers wait for a core the other threads hold).
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainyard.serving.schema import join_columns

if TYPE_CHECKING:
    from trainyard.serving.models import ServedModel
    from trainyard.serving.schema import ParsedRequest


@dataclass
class _Waiting:
    """One request's checked columns, waiting for a prediction thread."""

    model: ServedModel
    request: ParsedRequest
    answer: asyncio.Future = field(repr=False)


def split_answers(
    predictions: Any, probabilities: Any | None, sizes: list[int]
) -> list[tuple[Any, Any | None]]:
    """Cut a joined prediction back into each request's rows (pure).

    Args:
        predictions: One prediction per row of the joined requests.
        probabilities: The rows' class probabilities, or None.
        sizes: Each request's row count, in joining order.

    Returns:
        Each request's ``(predictions, probabilities)``.
    """
    parts, start = [], 0
    for size in sizes:
        end = start + size
        parts.append(
            (
                predictions[start:end],
                None if probabilities is None else probabilities[start:end],
            )
        )
        start = end
    return parts


class MicroBatcher:
    """Runs predictions in a bounded pool of threads, joining requests that wait.

    Args:
        workers: Predictions running at once.
        max_rows: Most rows joined into one prediction (a larger single request runs alone).
        native_threads: OpenMP / BLAS threads each prediction may use.
    """

    def __init__(self, workers: int, max_rows: int, native_threads: int = 1) -> None:
        self.workers = workers
        self.max_rows = max_rows
        self._pool = ThreadPoolExecutor(
            workers,
            thread_name_prefix="predict",
            initializer=_limit_native_threads,
            initargs=(native_threads,),
        )
        self._waiting: deque[_Waiting] = deque()
        self._free = workers

    async def predict(self, model: ServedModel, request: ParsedRequest) -> tuple[Any, Any | None]:
        """``model``'s predictions and probabilities for ``request`` (maybe joined with others').

        Raises:
            Exception: Whatever the model raised predicting these records alone.
        """
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(model, request, answer))
        self._dispatch()
        return await answer

    def _take(self) -> list[_Waiting]:
        """The oldest waiting request and every later one of the same model that fits."""
        first = self._waiting.popleft()
        taken, rows, kept = [first], first.request.rows, deque()
        while self._waiting:
            item = self._waiting.popleft()
            if item.model is first.model and rows + item.request.rows <= self.max_rows:
                taken.append(item)
                rows += item.request.rows
            else:
                kept.append(item)
        self._waiting = kept
        return taken

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._free and self._waiting:
            taken = self._take()
            self._free -= 1
            running = loop.run_in_executor(self._pool, _predict_joined, taken)
            running.add_done_callback(lambda done, taken=taken: self._finish(taken, done))

    def _finish(self, taken: list[_Waiting], done: asyncio.Future) -> None:
        self._free += 1
        for item, outcome in zip(taken, done.result(), strict=True):
            if item.answer.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                item.answer.set_exception(outcome)
            else:
                item.answer.set_result(outcome)
        self._dispatch()

    def shutdown(self) -> None:
        """Wait for running predictions, then stop the threads."""
        self._pool.shutdown(wait=True)


def _limit_native_threads(threads: int) -> None:
    """Cap the OpenMP and BLAS pools seen by the calling (prediction) thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def _predict_joined(taken: list[_Waiting]) -> list[tuple[Any, Any | None] | BaseException]:
    """Predict the taken requests in one call (in a pool thread); each one's answer or error."""
    model = taken[0].model
    if len(taken) == 1:
        try:
            return [model.predict(taken[0].request.columns)]
        except Exception as error:  # noqa: BLE001 (handed to the request that caused it)
            return [error]
    try:
        predictions, probabilities = model.predict(
            join_columns([item.request.columns for item in taken])
        )
    except Exception:  # noqa: BLE001 (find whose rows fail: predict each request alone)
        return [_predict_joined([item])[0] for item in taken]
    return list(split_answers(predictions, probabilities, [item.request.rows for item in taken]))
