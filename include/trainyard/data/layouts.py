"""Partition layouts: where a date (and hour) sits in a raw file's path.

A layout is declared in the spec as a pattern of path segments with the tokens ``YYYY``, ``MM``,
``DD`` and optionally ``HH``: ``date=YYYY-MM-DD``, ``year=YYYY/month=MM/day=DD``, ``dt=YYYYMMDD``,
``date=YYYY-MM-DD/hour=HH``. From it come the folder of one partition (to list exactly the files
a window needs) and a parser that recognises partition folders in a listing.

Pure and cheap to import: the spec module (imported at DAG parse time) validates patterns here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

#: The tokens of a pattern: strftime directive and the regular expression of their digits.
_TOKENS = {"YYYY": ("%Y", r"\d{4}"), "MM": ("%m", r"\d{2}"), "DD": ("%d", r"\d{2}"),
           "HH": ("%H", r"\d{2}")}  # fmt: skip
_TOKEN = re.compile("|".join(_TOKENS))
_ALLOWED = re.compile(r"^[A-Za-z0-9_=.\-/]+$")


class LayoutError(ValueError):
    """A partition pattern that cannot be used; the message says why."""


@dataclass(frozen=True)
class Layout:
    """A parsed partition pattern such as ``year=YYYY/month=MM/day=DD``."""

    pattern: str

    def __post_init__(self) -> None:
        if not _ALLOWED.match(self.pattern) or self.pattern.startswith("/"):
            raise LayoutError(
                f"partition pattern {self.pattern!r} may hold only letters, digits, '_', '=', "
                "'.', '-' and '/' (between path segments), and must not start with '/'"
            )
        found = _TOKEN.findall(self.pattern)
        for token in ("YYYY", "MM", "DD"):
            if found.count(token) != 1:
                raise LayoutError(
                    f"partition pattern {self.pattern!r} must hold {token} exactly once "
                    "(tokens: YYYY, MM, DD and optionally HH)"
                )
        if found.count("HH") > 1:
            raise LayoutError(f"partition pattern {self.pattern!r} holds HH more than once")
        if self.hourly and self.pattern.index("HH") < max(
            self.pattern.index(t) for t in ("YYYY", "MM", "DD")
        ):
            raise LayoutError(f"partition pattern {self.pattern!r}: HH must come after the date")

    @property
    def hourly(self) -> bool:
        """Whether partitions are per hour (the pattern holds ``HH``)."""
        return "HH" in self.pattern

    @staticmethod
    def _strftime(pattern: str, moment: datetime) -> str:
        return moment.strftime(_TOKEN.sub(lambda m: _TOKENS[m.group()][0], pattern))

    def folder(self, moment: datetime) -> str:
        """The partition folder of a day (or hour), relative to the source prefix, with '/'."""
        return self._strftime(self.pattern, moment) + "/"

    def day_folder(self, day: date) -> str:
        """The folder holding every partition of a day: the path up to the segment with HH."""
        segments = self.pattern.split("/")
        if self.hourly:
            segments = segments[: next(i for i, s in enumerate(segments) if "HH" in s)]
        moment = datetime(day.year, day.month, day.day)
        return self._strftime("/".join(segments), moment) + "/"

    def _regex(self) -> re.Pattern[str]:
        parts, position = [], 0
        for match in _TOKEN.finditer(self.pattern):
            parts.append(re.escape(self.pattern[position : match.start()]))
            parts.append(f"(?P<{match.group()}>{_TOKENS[match.group()][1]})")
            position = match.end()
        parts.append(re.escape(self.pattern[position:]))
        return re.compile("^" + "".join(parts) + "/")

    def moment_of(self, relative_key: str) -> datetime | None:
        """The day (or hour) of a key relative to the source prefix; None if it is not one.

        A folder name that matches the shape but not the calendar (``month=13``) is None too.
        """
        match = self._regex().match(relative_key)
        if match is None:
            return None
        try:
            return datetime(
                int(match["YYYY"]),
                int(match["MM"]),
                int(match["DD"]),
                int(match["HH"]) if self.hourly else 0,
            )
        except ValueError:
            return None


def hours_of(day: date) -> list[datetime]:
    """The 24 hours of a day."""
    start = datetime(day.year, day.month, day.day)
    return [start + timedelta(hours=h) for h in range(24)]
