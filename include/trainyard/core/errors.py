"""Errors raised on purpose, sorted by what retrying would do.

A :class:`DeterministicError` fails the same way every time for the same input (a bad spec, suite,
estimator or batch of data): Airflow fails the task at once without retries, the CLI prints its
one-line message and exits non-zero. A :class:`ServiceUnavailableError` (S3 or MLflow unreachable,
see :mod:`trainyard.core.services`) and anything unexpected are left to Airflow's retries.
"""

from __future__ import annotations


class TrainyardError(Exception):
    """Base of the errors trainyard raises; the message is meant for people."""


class DeterministicError(TrainyardError):
    """Retrying cannot help: the input is wrong. The message names what (file, field, column)."""


class NothingToDoError(TrainyardError):
    """The run has nothing to work on (no champion yet, no partitions and the spec says skip)."""


class ServiceUnavailableError(TrainyardError):
    """S3 or MLflow did not answer within the bounded retries; retrying later may succeed."""
