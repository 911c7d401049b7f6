"""Request bodies of ``POST /predict/<name>``, checked against the served model's signature (pure).

Three shapes are accepted, so clients of ``mlflow models serve`` can switch without changes:

- ``{"records": [{"col": value, ...}, ...]}`` (ours);
- ``{"dataframe_records": [{...}, ...]}`` (MLflow's records);
- ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (MLflow's split).

Every problem is a :class:`RequestError` whose message names the record and field, e.g.
``records[2].tenure_months: expected a number, got 'abc'``; the app answers it with 422.
``null`` is accepted for any column: the trained pipelines impute missing values.
Columns the signature does not name are ignored (the id column among them), as MLflow does.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from trainyard.core.errors import DeterministicError

#: MLflow ColSpec types, grouped by what a JSON value must be to fit them.
_NUMBER_TYPES = frozenset({"double", "float"})
_INTEGER_TYPES = frozenset({"long", "integer"})
Kind = Literal["number", "integer", "string", "boolean", "any"]


class RequestError(DeterministicError):
    """A request body the server refuses; ``str(error)`` is the one line sent back."""


@dataclass(frozen=True)
class Column:
    """One input column of a model signature."""

    name: str
    kind: Kind
    required: bool = True


@dataclass(frozen=True)
class ParsedRequest:
    """A checked request, column by column, and each row's id (or None).

    ``columns`` maps each of the model's input columns to its values: a float64 array for a
    number column (``null`` as NaN), a list for any other kind (``null`` as None).
    """

    columns: dict[str, Any]
    ids: list[str | None]

    @property
    def rows(self) -> int:
        return len(self.ids)


def join_columns(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The columns of several checked requests of one model, one after the other (pure)."""
    if len(parts) == 1:
        return parts[0]
    import numpy as np

    joined = {}
    for name, first in parts[0].items():
        values = [part[name] for part in parts]
        joined[name] = (
            np.concatenate(values)
            if isinstance(first, np.ndarray)
            else list(itertools.chain.from_iterable(values))
        )
    return joined


def split_columns(columns: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """A checked request's columns cut into ``parts`` runs of rows, in order (pure)."""
    rows = len(next(iter(columns.values())))
    bounds = [rows * index // parts for index in range(parts + 1)]
    return [
        {name: values[start:end] for name, values in columns.items()}
        for start, end in itertools.pairwise(bounds)
    ]


def columns_from_signature(input_schema: Any) -> tuple[Column, ...]:
    """The columns of an MLflow input schema (``ModelSignature.inputs``).

    Args:
        input_schema: An ``mlflow.types.Schema`` of named columns.

    Returns:
        One :class:`Column` per input, in the schema's order.

    Raises:
        ValueError: The schema has unnamed (tensor) inputs, which this server does not serve.
    """
    columns = []
    for spec in input_schema.inputs:
        if not getattr(spec, "name", None):
            raise ValueError("the model signature has unnamed inputs; only named columns serve")
        type_name = str(getattr(spec.type, "name", spec.type)).lower()
        kind: Kind = (
            "number"
            if type_name in _NUMBER_TYPES
            else "integer"
            if type_name in _INTEGER_TYPES
            else "string"
            if type_name == "string"
            else "boolean"
            if type_name == "boolean"
            else "any"
        )
        columns.append(Column(spec.name, kind, bool(getattr(spec, "required", True))))
    return tuple(columns)


def _check_value(kind: Kind, value: Any) -> str | None:
    """Why ``value`` does not fit a column of ``kind`` (None when it fits)."""
    if value is None or kind == "any":
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:
                return "expected a finite number"
        elif not math.isfinite(value):
            return "expected a finite number"
        return None
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        return None
    if kind == "string":
        return None if isinstance(value, str) else "expected a string"
    return None if isinstance(value, bool) else "expected true or false"


#: The exact types of the decoded JSON values that fit each kind without a closer look
#: (``json`` gives exact ``int``/``float``/``str``/``bool``; ``bool`` is not an ``int`` here).
_FITTING_TYPES: dict[Kind, frozenset[type]] = {
    "number": frozenset({int, float, type(None)}),
    "integer": frozenset({int, type(None)}),
    "string": frozenset({str, type(None)}),
    "boolean": frozenset({bool, type(None)}),
}

#: A field a record does not have (``None`` is a value: JSON ``null``).
_ABSENT: Any = object()


def _check_column(kind: Kind, values: list[Any]) -> tuple[Any, int | None, str | None]:
    """One column's values checked at once: the column as served, and its first problem.

    The common case costs a few C-level passes (the set of the values' types, one NumPy
    conversion); only a column that has a problem is walked value by value, to name its row.

    Returns:
        The values (a float64 array for a number column), the index of the first value that
        does not fit (or None), and why.
    """
    fits = kind == "any" or set(map(type, values)) <= _FITTING_TYPES[kind]
    if fits and kind != "number":
        return values, None, None
    if fits:
        import numpy as np

        try:
            array = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float: walked below
            array = None
        else:
            # ``null`` is NaN here, and allowed; a NaN or infinity the body spelled is not.
            for index in np.flatnonzero(~np.isfinite(array)).tolist():
                if values[index] is not None:
                    return array, index, _check_value(kind, values[index])
            return array, None, None
    for index, value in enumerate(values):
        problem = _check_value(kind, value)
        if problem is not None:
            return values, index, problem
    raise AssertionError(f"a {kind} column did not fit, yet each of its values does")


def _split_rows(split: Any) -> tuple[list[str], list[list[Any]]]:
    """The column names and rows of a ``dataframe_split`` object, their shape checked."""
    if not isinstance(split, dict):
        raise RequestError("dataframe_split: expected an object with columns and data")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("dataframe_split.columns: expected a list of column names")
    if not isinstance(data, list):
        raise RequestError("dataframe_split.data: expected a list of rows")
    if set(map(type, data)) - {list} or set(map(len, data)) - {len(columns)}:
        for index, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(columns):
                raise RequestError(
                    f"dataframe_split.data[{index}]: expected a list of {len(columns)} values"
                )
    return columns, data


def _payload_shape(payload: Any) -> tuple[str, list[Any] | tuple[list[str], list[list[Any]]]]:
    """Where the rows of a decoded body are: ``(name, records)`` or ``(name, (columns, rows))``."""
    if isinstance(payload, dict):
        for key in ("records", "dataframe_records"):
            if key in payload:
                records = payload[key]
                if not isinstance(records, list):
                    raise RequestError(f"{key}: expected a list of objects")
                return key, records
        if "dataframe_split" in payload:
            return "dataframe_split", _split_rows(payload["dataframe_split"])
    raise RequestError(
        'body: expected {"records": [...]}, {"dataframe_records": [...]} or '
        '{"dataframe_split": {"columns": [...], "data": [...]}}'
    )


def parse_request(
    body: bytes, columns: tuple[Column, ...], id_column: str | None = None
) -> ParsedRequest:
    """Decode a request body and check every value against the model's columns.

    The checks run column by column over all rows (see :func:`_check_column`), and report the
    problem a record-by-record walk would meet first: the lowest row, and in it the first
    column in the model's order.

    Args:
        body: The raw request body (JSON).
        columns: The model's input columns (:func:`columns_from_signature`).
        id_column: The spec's id column: its value, when a record has one, becomes the row id
            of the prediction log.

    Returns:
        The model's columns (missing optional ones as None) and each row's id.

    Raises:
        RequestError: Not JSON, not one of the accepted shapes, no records, or a record with a
            missing required field or a value of the wrong type (the first problem found).
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(f"body: not valid JSON ({error})") from None
    where, rows = _payload_shape(payload)
    first_bad: tuple[int, str] | None = None  # (row, message) of the first record not an object
    if isinstance(rows, tuple):
        names, data = rows
        count = len(data)
        position = {name: index for index, name in enumerate(names)}  # the last one, as dict()
        transposed = list(zip(*data, strict=True))

        def column_values(name: str, absent: Any) -> list[Any]:
            return list(transposed[position[name]]) if name in position else [absent] * count

    else:
        if set(map(type, rows)) - {dict}:
            index = next(i for i, row in enumerate(rows) if not isinstance(row, dict))
            first_bad = (index, f"{where}[{index}]: expected an object of column values")
            rows = rows[:index]  # a record before it may have a problem of its own
        count = len(rows)

        def column_values(name: str, absent: Any) -> list[Any]:
            return [row.get(name, absent) for row in rows]

    if not count and first_bad is None:
        raise RequestError(f"{where}: no records to predict")
    checked: dict[str, Any] = {}
    problem: tuple[int, str] | None = None  # (row, message); a later column must be lower
    for column in columns:
        values = column_values(column.name, _ABSENT if column.required else None)
        if problem is not None:  # only rows before it can hold a problem reported first
            values = values[: problem[0]]
        if column.required and _ABSENT in values:
            missing = values.index(_ABSENT)
            problem = (missing, f"{where}[{missing}]: missing field {column.name!r}")
            values = values[:missing]
        checked[column.name], index, why = _check_column(column.kind, values)
        if index is not None:
            shown = f"{values[index]!r:.60}"
            problem = (index, f"{where}[{index}].{column.name}: {why}, got {shown}")
    if problem is not None:
        raise RequestError(problem[1])
    if first_bad is not None:
        raise RequestError(first_bad[1])
    raw_ids = column_values(id_column, None) if id_column else [None] * count
    return ParsedRequest(checked, [None if raw is None else str(raw) for raw in raw_ids])
